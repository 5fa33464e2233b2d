import COpenBLAS
import TensorCore

/// C[m, n] = alpha · op(A) · op(B) + beta · C, row-major, through OpenBLAS's sgemm, split over
/// the worker pool by rows of C (or by columns when C has few rows). op(A) is [m, k]: A is
/// [m, k] (lda) or, transposed, [k, m]; op(B) is [k, n]: B is [k, n] (ldb) or, transposed, [n, k].
/// OpenBLAS itself runs single-threaded inside the pool (DESIGN.md, Threads).
func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
          beta: Float = 0, _ c: UnsafeMutablePointer<Float>, ldc: Int, pool: WorkerPool?) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        // Empty reduction: C = beta·C.
        for i in 0..<m {
            for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] }
        }
        return
    }
    let ta = transA ? CblasTrans : CblasNoTrans
    let tb = transB ? CblasTrans : CblasNoTrans
    let threads = pool?.threads ?? 1
    let flops = m * n * k
    guard let pool, threads > 1, flops >= 1 << 18 else {
        cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        return
    }
    nonisolated(unsafe) let (ap, bp, cp) = (a, b, c)
    if m >= n || m >= 64 * threads {
        pool.parallelFor(m, granularity: 16) { r in
            let rows = r.count
            let aOff = transA ? ap + r.lowerBound : ap + r.lowerBound * lda
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(rows), Int32(n), Int32(k), alpha, aOff, Int32(lda), bp, Int32(ldb),
                        beta, cp + r.lowerBound * ldc, Int32(ldc))
        }
    } else {
        pool.parallelFor(n, granularity: 16) { r in
            let cols = r.count
            let bOff = transB ? bp + r.lowerBound * ldb : bp + r.lowerBound
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(cols), Int32(k), alpha, ap, Int32(lda), bOff, Int32(ldb),
                        beta, cp + r.lowerBound, Int32(ldc))
        }
    }
}

/// y += a·x over n floats.
@inline(__always)
func axpy(_ n: Int, _ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
    cblas_saxpy(Int32(n), a, x, 1, y, 1)
}
