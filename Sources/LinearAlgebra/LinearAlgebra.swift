import COpenBLAS

// SVD and PCA through LAPACK (OpenBLAS's sgesdd_, declared in the COpenBLAS shim: Debian ships
// no lapacke.h). One implementation for the training engine (PiSSA) and for strategy plugins
// (PluginKit re-exports it); row-major f32 throughout.

/// A failure of the shared math (bad shapes, LAPACK errors).
public struct MathError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// A thin SVD A = U · diag(S) · Vᵀ of a row-major [m, n] matrix, k = min(m, n): U [m, k],
/// S [k] descending, Vᵀ [k, n], all row-major.
public struct SVD: Sendable {
    public let u: [Float]
    public let s: [Float]
    public let vt: [Float]
    public let rows: Int
    public let cols: Int
    public var rank: Int { s.count }

    /// LAPACK's divide-and-conquer sgesdd. A row-major [m, n] matrix is the column-major
    /// [n, m] matrix Aᵀ = U′ S V′ᵀ, so A = V′ S U′ᵀ: LAPACK's `vt` buffer is our U and its
    /// `u` buffer our Vᵀ, both already row-major.
    public init(_ a: UnsafePointer<Float>, rows m: Int, cols n: Int) throws {
        try self.init(values: Array(UnsafeBufferPointer(start: a, count: max(0, m) * max(0, n))), rows: m, cols: n)
    }

    public init(_ a: [Float], rows m: Int, cols n: Int) throws {
        try self.init(values: a, rows: m, cols: n)
    }

    private init(values a: [Float], rows m: Int, cols n: Int) throws {
        guard m >= 0, n >= 0, a.count == m * n else { throw MathError("SVD: \(a.count) values for a [\(m), \(n)] matrix") }
        let k = min(m, n)
        guard k > 0 else { throw MathError("SVD of an empty matrix") }
        guard m <= Int(Int32.max), n <= Int(Int32.max) else { throw MathError("SVD: matrix too large for LAPACK") }
        guard a.allSatisfy(\.isFinite) else { throw MathError("SVD of a matrix with non-finite values") }
        var work = a
        var jobz = CChar(UInt8(ascii: "S"))
        var lm = Int32(n), ln = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(k)
        var sv = [Float](repeating: 0, count: k)
        var uBuf = [Float](repeating: 0, count: n * k)
        var vtBuf = [Float](repeating: 0, count: k * m)
        var iwork = [Int32](repeating: 0, count: 8 * k)
        var info: Int32 = 0
        var lwork: Int32 = -1
        var query: Float = 0
        sgesdd_(&jobz, &lm, &ln, &work, &lda, &sv, &uBuf, &ldu, &vtBuf, &ldvt, &query, &lwork, &iwork, &info)
        guard info == 0 else { throw MathError("sgesdd workspace query failed (info \(info))") }
        lwork = Int32(query.rounded(.up)) + 1
        var scratch = [Float](repeating: 0, count: Int(lwork))
        sgesdd_(&jobz, &lm, &ln, &work, &lda, &sv, &uBuf, &ldu, &vtBuf, &ldvt, &scratch, &lwork, &iwork, &info)
        guard info == 0 else { throw MathError(info > 0 ? "sgesdd did not converge (info \(info))" : "sgesdd: bad argument \(-info)") }
        u = vtBuf
        s = sv
        vt = uBuf
        rows = m
        cols = n
    }

    /// The best rank-r approximation's factors: B = U_r·diag(S_r) [m, r] and A = Vᵀ_r [r, n]
    /// (B·A ≈ the matrix), as a low-rank delta takes them.
    public func truncated(rank r: Int) -> (b: [Float], a: [Float]) {
        let r = max(0, min(r, rank))
        var b = [Float](repeating: 0, count: rows * r)
        for i in 0..<rows { for j in 0..<r { b[i * r + j] = u[i * rank + j] * s[j] } }
        return (b, Array(vt[0..<(r * cols)]))
    }
}

/// Principal components of samples [n, dim] (rows are samples): the mean, the top k
/// components [k, dim] (unit rows, by descending variance) and their variances (÷ (n − 1)).
public struct PCA: Sendable {
    public let mean: [Float]
    public let components: [Float]
    public let variances: [Float]
    public let dimension: Int
    public let count: Int

    public init(samples: [Float], count n: Int, dimension dim: Int, components k: Int) throws {
        guard samples.count == n * dim else { throw MathError("PCA: \(samples.count) values for \(n) samples of dimension \(dim)") }
        guard k >= 1, k <= min(n, dim) else { throw MathError("PCA: \(k) components from \(n) samples of dimension \(dim)") }
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

    /// One sample's coordinates on the components: [k].
    public func transform(_ x: [Float]) -> [Float] {
        (0..<count).map { i in
            var acc: Float = 0
            for c in 0..<dimension { acc += (x[c] - mean[c]) * components[i * dimension + c] }
            return acc
        }
    }
}
