import COpenBLAS
import Foundation

/// A thin singular value decomposition A = U · diag(S) · Vᵀ of a row-major [m, n] matrix,
/// k = min(m, n): U [m, k], S [k] descending, Vᵀ [k, n], all row-major.
public struct SVD: Sendable {
    public let u: [Float]
    public let s: [Float]
    public let vt: [Float]
    public let rows: Int
    public let cols: Int
    public var rank: Int { s.count }

    /// LAPACK's divide-and-conquer `sgesdd` (OpenBLAS). A row-major [m, n] matrix is the
    /// column-major [n, m] matrix Aᵀ = U′ S V′ᵀ, so A = V′ S U′ᵀ: LAPACK's `vt` buffer is our U
    /// and its `u` buffer our Vᵀ, both already row-major — no transposes.
    public init(_ a: UnsafePointer<Float>, rows m: Int, cols n: Int) throws {
        let k = min(m, n)
        guard k > 0 else { throw TrainingError.invalidArgument("SVD of an empty matrix") }
        var work = [Float](UnsafeBufferPointer(start: a, count: m * n))
        var jobz = CChar(UInt8(ascii: "S"))
        var lm = Int32(n), ln = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(k)
        var sv = [Float](repeating: 0, count: k)
        var uBuf = [Float](repeating: 0, count: n * k)     // U′: [n, k] column-major = Vᵀ [k, n] row-major
        var vtBuf = [Float](repeating: 0, count: k * m)    // V′ᵀ: [k, m] column-major = U [m, k] row-major
        var iwork = [Int32](repeating: 0, count: 8 * k)
        var info: Int32 = 0
        var lwork: Int32 = -1
        var query: Float = 0
        sgesdd_(&jobz, &lm, &ln, &work, &lda, &sv, &uBuf, &ldu, &vtBuf, &ldvt, &query, &lwork, &iwork, &info)
        guard info == 0 else { throw TrainingError.invalidArgument("sgesdd workspace query failed (info \(info))") }
        lwork = Int32(query.rounded(.up)) + 1
        var scratch = [Float](repeating: 0, count: Int(lwork))
        sgesdd_(&jobz, &lm, &ln, &work, &lda, &sv, &uBuf, &ldu, &vtBuf, &ldvt, &scratch, &lwork, &iwork, &info)
        guard info == 0 else {
            throw TrainingError.invalidArgument(info > 0 ? "sgesdd did not converge (info \(info))" : "sgesdd: bad argument \(-info)")
        }
        u = vtBuf
        s = sv
        vt = uBuf
        rows = m
        cols = n
    }

    public init(_ a: [Float], rows m: Int, cols n: Int) throws {
        precondition(a.count == m * n)
        self = try a.withUnsafeBufferPointer { try SVD($0.baseAddress!, rows: m, cols: n) }
    }
}

/// Principal components of `samples` [n, dim] (rows are samples): the mean, the top `k`
/// components [k, dim] (unit rows, descending variance) and their variances (÷ (n − 1)).
public struct PCA: Sendable {
    public let mean: [Float]
    public let components: [Float]
    public let variances: [Float]
    public let dimension: Int
    public let count: Int

    public init(samples: [Float], count n: Int, dimension dim: Int, components k: Int) throws {
        precondition(samples.count == n * dim)
        guard k >= 1, k <= min(n, dim) else { throw TrainingError.invalidArgument("PCA: \(k) components from \(n) samples of dimension \(dim)") }
        var mean = [Float](repeating: 0, count: dim)
        for r in 0..<n { for c in 0..<dim { mean[c] += samples[r * dim + c] } }
        for c in 0..<dim { mean[c] /= Float(n) }
        var centered = samples
        for r in 0..<n { for c in 0..<dim { centered[r * dim + c] -= mean[c] } }
        let svd = try SVD(centered, rows: n, cols: dim)
        self.mean = mean
        components = Array(svd.vt[0..<(k * dim)])
        variances = svd.s[0..<k].map { $0 * $0 / Float(max(n - 1, 1)) }
        dimension = dim
        count = k
    }

    /// Projects one sample onto the components: [k].
    public func transform(_ x: [Float]) -> [Float] {
        (0..<count).map { i in
            var acc: Float = 0
            for c in 0..<dimension { acc += (x[c] - mean[c]) * components[i * dimension + c] }
            return acc
        }
    }
}
