import COpenBLAS
import Dispatch
import Foundation

/// The one fixed pool that kernels split their work over (DESIGN.md, Threads). OpenBLAS runs
/// single-threaded inside it: its own threads spin between calls and fight the pool on 2 cores.
public final class WorkerPool: Sendable {
    /// Number of workers; each `parallelFor` runs at most this many chunks at once.
    public let threads: Int

    public init(threads: Int? = nil) {
        let n = threads ?? ProcessInfo.processInfo.activeProcessorCount
        self.threads = max(1, n)
        openblas_set_num_threads(1)
    }

    /// Runs `body` over `[0, count)` split into at most `threads` contiguous chunks whose
    /// boundaries are multiples of `granularity`. How work is split never changes results: the
    /// kernels reduce each output element in a fixed order.
    public func parallelFor(_ count: Int, granularity: Int = 1,
                            _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let units = (count + granularity - 1) / granularity
        let chunks = min(threads, units)
        if chunks <= 1 {
            body(0..<count)
            return
        }
        let perChunk = (units + chunks - 1) / chunks
        withoutActuallyEscaping(body) { escaping in
            // The caller's closure only runs during this call, on the pool's threads; the data
            // it touches is partitioned by `range`, so sharing it is sound.
            nonisolated(unsafe) let body = escaping
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = c * perChunk * granularity
                let hi = min(count, (c + 1) * perChunk * granularity)
                if lo < hi { body(lo..<hi) }
            }
        }
    }
}
