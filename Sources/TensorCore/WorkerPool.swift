import CKernels
import COpenBLAS
import Foundation

/// The one fixed pool that kernels split their work over (DESIGN.md, Threads): the calling
/// thread plus `threads - 1` workers that spin briefly between tasks, then sleep. OpenBLAS runs
/// single-threaded inside it: its own threads spin between calls and fight the pool on 2 cores.
/// One task at a time: a pool belongs to one submitting thread (the engine thread).
public final class WorkerPool: @unchecked Sendable {
    /// Number of threads a `parallelFor` runs on, the caller included.
    public let threads: Int
    private let pool: OpaquePointer
    private let lock = NSLock()

    public init(threads: Int? = nil) {
        let n = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.threads = n
        pool = gk_pool_create(Int32(n))
        openblas_set_num_threads(1)
    }

    deinit { gk_pool_destroy(pool) }

    private final class Task {
        let body: (Range<Int>) -> Void
        let count: Int
        let perChunk: Int
        init(_ body: @escaping (Range<Int>) -> Void, count: Int, perChunk: Int) {
            self.body = body
            self.count = count
            self.perChunk = perChunk
        }
    }

    /// Runs `body` over `[0, count)` split into at most `threads` contiguous chunks whose
    /// boundaries are multiples of `granularity`. How work is split never changes results: the
    /// kernels reduce each output element in a fixed order.
    public func parallelFor(_ count: Int, granularity: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let units = (count + granularity - 1) / granularity
        let chunks = min(threads, units)
        if chunks <= 1 || gk_pool_in_task() != 0 {
            body(0..<count)
            return
        }
        let perChunk = (units + chunks - 1) / chunks * granularity
        // Concurrent submitters (tests sharing a pool) take turns; the engine has one thread.
        lock.lock()
        defer { lock.unlock() }
        withoutActuallyEscaping(body) { escaping in
            let task = Task(escaping, count: count, perChunk: perChunk)
            withExtendedLifetime(task) {
                gk_pool_run(pool, { ctx, chunk in
                    let task = Unmanaged<Task>.fromOpaque(ctx!).takeUnretainedValue()
                    let lo = Int(chunk) * task.perChunk
                    let hi = min(task.count, lo + task.perChunk)
                    if lo < hi { task.body(lo..<hi) }
                }, Unmanaged.passUnretained(task).toOpaque(), Int32(chunks))
            }
        }
    }
}
