import Foundation
import LanguageModel
import TensorCore

/// What a delta may hold before it is refused. Defaults suit learned deltas; a variant may
/// override them (the paper's unaligned baselines carry deltas of ±1 on purpose).
public struct DeltaBounds: Sendable, Equatable, Codable {
    /// Largest |value| of a dense, row or column entry (low-rank factors are not bounded one by
    /// one: their product's norm is).
    public var maxAbsValue: Float = 16
    /// Largest ‖Δ‖_F / ‖W‖_F, over the rows (row-sparse) or the whole matrix (other kinds).
    public var maxRelativeNorm: Float = 4

    public init(maxAbsValue: Float = 16, maxRelativeNorm: Float = 4) {
        self.maxAbsValue = maxAbsValue
        self.maxRelativeNorm = maxRelativeNorm
    }

    /// No norm bound at all (finite values are still required).
    public static let unbounded = DeltaBounds(maxAbsValue: .infinity, maxRelativeNorm: .infinity)
}

/// Checks a delta's values against the model: finite everywhere, within `bounds`, made for
/// this model (fingerprint).
public enum DeltaValidator {
    public static func validate(_ delta: Delta, weights: ModelWeights, fingerprint: String, bounds: DeltaBounds) throws {
        guard delta.metadata.modelFingerprint == fingerprint else {
            throw TransferError.fingerprintMismatch(expected: fingerprint, found: delta.metadata.modelFingerprint)
        }
        for target in delta.entries.keys.sorted() {
            let w: WeightMatrix
            switch weights.deltaTarget(named: target) {
            case .failure(let why):
                throw TransferError.badEntry(tensor: target, "\(why)")
            case .success(.vector(let v)):
                // A 1-D tensor: dense entries of its length, bounded against its base values.
                let base = weights.baseVector(v)
                for entry in delta.entries[target]! {
                    guard case .dense(let d) = entry, d.count == base.count else {
                        throw TransferError.badEntry(tensor: target, "a 1-D tensor of \(base.count) values takes only dense deltas of that length")
                    }
                    try base.withUnsafeBytes { b in
                        try check(entry, target: target, w: WeightMatrix(dtype: .f32, rows: 1, cols: base.count, base: b.baseAddress!), bounds: bounds)
                    }
                }
                continue
            case .success(let t):
                w = weights.matrix(t)!
            }
            for entry in delta.entries[target]! {
                if let problem = entry.validate(rows: w.rows, cols: w.cols) { throw TransferError.badEntry(tensor: target, problem) }
                try check(entry, target: target, w: w, bounds: bounds)
            }
        }
    }

    static func check(_ entry: DeltaEntry, target: String, w: WeightMatrix, bounds: DeltaBounds) throws {
        func finiteAndSmall(_ v: [Float]) throws -> Double {
            var sum = 0.0
            for x in v {
                guard x.isFinite else { throw TransferError.outOfBounds(tensor: target, "holds NaN or infinite values") }
                guard abs(x) <= bounds.maxAbsValue else {
                    throw TransferError.outOfBounds(tensor: target, "a value of \(x) exceeds the bound \(bounds.maxAbsValue)")
                }
                sum += Double(x) * Double(x)
            }
            return sum
        }
        let deltaSquared: Double
        var baseRows: [Int]? = nil
        switch entry {
        case .dense(let v), .columns(_, let v):
            deltaSquared = try finiteAndSmall(v)
        case .rows(let idx, let v):
            deltaSquared = try finiteAndSmall(v)
            baseRows = idx
        case .lowRank(let a, let b, let r, let scale):
            for x in a + b where !x.isFinite { throw TransferError.outOfBounds(tensor: target, "holds NaN or infinite values") }
            // ‖s·B·A‖²_F = s² · tr((BᵀB)(AAᵀ)): r×r Gram matrices, never the [out, in] product.
            let inDim = w.cols, out = w.rows
            var btb = [Double](repeating: 0, count: r * r), aat = [Double](repeating: 0, count: r * r)
            for i in 0..<r {
                for j in 0..<r {
                    var s1 = 0.0, s2 = 0.0
                    for o in 0..<out { s1 += Double(b[o * r + i]) * Double(b[o * r + j]) }
                    for c in 0..<inDim { s2 += Double(a[i * inDim + c]) * Double(a[j * inDim + c]) }
                    btb[i * r + j] = s1
                    aat[i * r + j] = s2
                }
            }
            var trace = 0.0
            for i in 0..<r { for j in 0..<r { trace += btb[i * r + j] * aat[j * r + i] } }
            deltaSquared = Double(scale) * Double(scale) * trace
            guard deltaSquared.isFinite else { throw TransferError.outOfBounds(tensor: target, "its norm overflows") }
        }
        guard bounds.maxRelativeNorm.isFinite else { return }
        let baseSquared = frobeniusSquared(w, rows: baseRows)
        let ratio = (deltaSquared / max(baseSquared, 1e-30)).squareRoot()
        guard ratio <= Double(bounds.maxRelativeNorm) else {
            throw TransferError.outOfBounds(tensor: target, String(format: "‖Δ‖/‖W‖ = %.3g exceeds the bound %.3g", ratio, Double(bounds.maxRelativeNorm)))
        }
    }

    /// ‖W‖²_F over `rows` (all rows when nil), widened from the stored dtype.
    static func frobeniusSquared(_ w: WeightMatrix, rows: [Int]?) -> Double {
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: w.cols)
        defer { buffer.deallocate() }
        var sum = 0.0
        for r in rows ?? Array(0..<w.rows) {
            w.widenRow(r, into: buffer)
            for c in 0..<w.cols { sum += Double(buffer[c]) * Double(buffer[c]) }
        }
        return sum
    }
}
