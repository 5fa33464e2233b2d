import CKernels
import COpenBLAS
import Foundation

/// Machine probes that benchmarks print beside their figures: memory read bandwidth (the bound
/// of decode) and the GEMM rate OpenBLAS reaches (the reference for prefill and training).
public enum Probes {
    /// Median of `repeats` timings of `body`, in seconds; an error from `body` ends the timing
    /// and is rethrown (a benchmark must not time work that failed).
    public static func medianSeconds(repeats: Int, _ body: () throws -> Void) rethrows -> Double {
        var times: [Double] = []
        for _ in 0..<max(1, repeats) { times.append(try seconds(body)) }
        return median(times)
    }

    /// Wall-clock seconds of one run of `body` (its error rethrown).
    public static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    public static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Read bandwidth in bytes/s over a `bytes`-sized buffer, split over `threads` workers: the
    /// best of three read patterns, each the median of `repeats`.
    public static func readBandwidth(bytes: Int = 1 << 30, threads: Int, repeats: Int = 5) -> Double {
        readBandwidthPatterns(bytes: bytes, threads: threads, repeats: repeats).map(\.bytesPerSecond).max() ?? 0
    }

    /// Read bandwidth of each pattern: one sequential stream per thread, and 4 or 8 streams in
    /// lockstep with software prefetch (the way the decode kernels read); medians of `repeats`.
    public static func readBandwidthPatterns(bytes: Int = 1 << 30, threads: Int, repeats: Int = 5)
        -> [(streams: Int, bytesPerSecond: Double)] {
        let n = bytes / 64 * 64
        let (buffer, release) = hugePageBuffer(n)
        defer { release() }
        memset(buffer, 1, n)                     // fault every page in first
        let pool = WorkerPool(threads: threads)
        nonisolated(unsafe) let base = UnsafeRawPointer(buffer)
        return [(1, 0), (4, 1024), (8, 1024)].map { streams, prefetch in
            let chunk = n / max(1, threads) / (256 * streams) * (256 * streams)
            let seconds = medianSeconds(repeats: repeats) {
                pool.parallelFor(threads) { range in
                    for t in range { _ = gk_read_bytes_streams(base + t * chunk, chunk, Int32(streams), prefetch) }
                }
            }
            return (streams, Double(chunk * threads) / seconds)
        }
    }

    /// `n` bytes, 2 MiB-aligned in transparent huge pages where the kernel gives them (as the
    /// weights' mapping asks for them: SafeTensorsFile.map), and how to give them back. The
    /// bandwidth probe reads memory this way so that its bound is the fastest read of memory,
    /// not a 4 KiB-page one (sequential reads on Zen 4: 4 KiB pages 21-24 GB/s, 2 MiB 28-30).
    static func hugePageBuffer(_ n: Int) -> (UnsafeMutableRawPointer, () -> Void) {
        #if os(Linux)
        let huge = SystemInfo.hugePageBytes
        if let region = mmap(nil, n + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), region != MAP_FAILED {
            let p = SystemInfo.hugePageBoundary(atOrAfter: region)
            _ = madvise(p, n, MADV_HUGEPAGE)
            return (p, { munmap(region, n + huge) })
        }
        #endif
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 64)
        return (p, { p.deallocate() })
    }

    /// FLOP/s of the FMA-only loop (gk_fma_rate: the cores' f32 FMA rate at the kernels' vector
    /// width) on each of `threads` pool threads at once, summed; the median of `repeats`. 0 with
    /// the scalar kernels. The compute reference of batched decode. `bf16DotProducts`: the loop on
    /// AVX-512 BF16's dot products instead (gk_dpbf16_rate; 0 where the CPU lacks them), the
    /// reference of products with bf16 activations.
    public static func fmaRate(threads: Int, repeats: Int = 3, bf16DotProducts: Bool = false) -> Double {
        let pool = WorkerPool(threads: threads)
        let rates: [Double] = (0..<max(1, repeats)).map { _ in
            let sums = UnsafeMutablePointer<Double>.allocate(capacity: threads)
            defer { sums.deallocate() }
            sums.initialize(repeating: 0, count: threads)
            nonisolated(unsafe) let out = sums
            pool.parallelFor(threads) { range in
                for t in range { out[t] = bf16DotProducts ? gk_dpbf16_rate() : gk_fma_rate() }
            }
            return (0..<threads).reduce(0) { $0 + sums[$1] }
        }
        return median(rates) * 1e9
    }

    /// FLOP/s of OpenBLAS sgemm C[m,n] = A[m,k]·B[k,n] at `threads` OpenBLAS threads; median.
    public static func sgemmRate(m: Int, n: Int, k: Int, threads: Int, repeats: Int = 5) -> Double {
        let a = [Float](repeating: 0.5, count: m * k)
        let b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(1) }
        let seconds = medianSeconds(repeats: repeats) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        }
        return 2 * Double(m) * Double(n) * Double(k) / seconds
    }
}
