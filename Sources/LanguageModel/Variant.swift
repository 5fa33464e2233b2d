import TensorCore

/// The matrices of a decoder block a delta can touch, in Hugging Face names.
public enum LayerModule: String, CaseIterable, Sendable {
    case q = "self_attn.q_proj"
    case k = "self_attn.k_proj"
    case v = "self_attn.v_proj"
    case o = "self_attn.o_proj"
    case gate = "mlp.gate_proj"
    case up = "mlp.up_proj"
    case down = "mlp.down_proj"

    /// `model.layers.{layer}.{module}.weight`
    public func tensorName(layer: Int) -> String { "model.layers.\(layer).\(rawValue).weight" }

    /// Parses a target tensor name into (layer, module); nil for anything else.
    public static func parse(_ name: String) -> (layer: Int, module: LayerModule)? {
        let prefix = "model.layers.", suffix = ".weight"
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard let dot = middle.firstIndex(of: "."), let layer = Int(middle[..<dot]),
              let module = LayerModule(rawValue: String(middle[middle.index(after: dot)...])) else { return nil }
        return (layer, module)
    }
}

/// A correction ΔW to one weight matrix W `[out, in]`, in f32. The layouts are DESIGN.md's:
/// dense `[out, in]`; row-sparse (rows of Δ at `indices`, values `[k, in]`); column-sparse
/// (columns at `indices`, values `[out, k]`); low-rank `scale · B·A` with A `[r, in]`, B `[out, r]`.
public enum DeltaEntry: Sendable, Equatable {
    case dense(values: [Float])
    case rows(indices: [Int], values: [Float])
    case columns(indices: [Int], values: [Float])
    case lowRank(a: [Float], b: [Float], rank: Int, scale: Float)

    /// Checks the entry against the shape of the matrix it corrects.
    public func validate(rows out: Int, cols inDim: Int) -> String? {
        switch self {
        case .dense(let v):
            return v.count == out * inDim ? nil : "dense delta has \(v.count) values, the matrix \(out)×\(inDim)"
        case .rows(let idx, let v):
            if let bad = idx.first(where: { $0 < 0 || $0 >= out }) { return "row index \(bad) outside 0..<\(out)" }
            if Set(idx).count != idx.count { return "row indices repeat" }
            return v.count == idx.count * inDim ? nil : "row values have \(v.count) elements, expected \(idx.count)×\(inDim)"
        case .columns(let idx, let v):
            if let bad = idx.first(where: { $0 < 0 || $0 >= inDim }) { return "column index \(bad) outside 0..<\(inDim)" }
            if Set(idx).count != idx.count { return "column indices repeat" }
            return v.count == out * idx.count ? nil : "column values have \(v.count) elements, expected \(out)×\(idx.count)"
        case .lowRank(let a, let b, let r, let scale):
            guard r > 0 else { return "rank must be positive" }
            guard scale.isFinite else { return "scale is not finite" }
            if a.count != r * inDim { return "lora_a has \(a.count) elements, expected \(r)×\(inDim)" }
            return b.count == out * r ? nil : "lora_b has \(b.count) elements, expected \(out)×\(r)"
        }
    }

    /// Δ as a dense `[out, in]` matrix (for merging and tests).
    public func densified(rows out: Int, cols inDim: Int) -> [Float] {
        switch self {
        case .dense(let v):
            return v
        case .rows(let idx, let v):
            var d = [Float](repeating: 0, count: out * inDim)
            for (i, r) in idx.enumerated() { for c in 0..<inDim { d[r * inDim + c] = v[i * inDim + c] } }
            return d
        case .columns(let idx, let v):
            var d = [Float](repeating: 0, count: out * inDim)
            for r in 0..<out { for (j, c) in idx.enumerated() { d[r * inDim + c] = v[r * idx.count + j] } }
            return d
        case .lowRank(let a, let b, let rank, let scale):
            var d = [Float](repeating: 0, count: out * inDim)
            for r in 0..<out {
                for c in 0..<inDim {
                    var s: Float = 0
                    for k in 0..<rank { s += b[r * rank + k] * a[k * inDim + c] }
                    d[r * inDim + c] = scale * s
                }
            }
            return d
        }
    }

    /// Bytes the entry holds.
    public var byteCount: Int {
        switch self {
        case .dense(let v): v.count * 4
        case .rows(let i, let v), .columns(let i, let v): i.count * 8 + v.count * 4
        case .lowRank(let a, let b, _, _): (a.count + b.count) * 4
        }
    }
}

/// How a variant's deltas reach the weights: added after the base product for the sequences
/// that use it (unmerged: one base GEMM serves a batch mixing variants), or folded into a
/// private f32 copy of each touched matrix (merged: faster, costs the matrix's memory).
public enum VariantMode: String, Sendable, Codable {
    case unmerged
    case merged
}

/// An immutable snapshot: the base weights plus deltas. Untouched tensors are the base's mmap.
/// The base variant is the one with no deltas.
public final class Variant: @unchecked Sendable {
    public let name: String
    public let mode: VariantMode
    /// Deltas per target tensor, in the order given (several deltas on one tensor add up).
    public let deltas: [String: [DeltaEntry]]
    /// [layer][module] → the entries for that matrix (unmerged) — precomputed for the forward.
    let perLayer: [[LayerModule: [DeltaEntry]]]
    /// [layer][module] → a private merged copy (merged mode).
    let mergedMatrices: [[LayerModule: WeightMatrix]]
    private let mergedStorage: [UnsafeMutablePointer<Float>]

    /// Builds and validates a variant of `weights`. Throws `ModelError.badTensor` for unknown
    /// names, wrong shapes or non-finite values.
    public init(name: String, weights: ModelWeights, deltas: [String: [DeltaEntry]], mode: VariantMode = .unmerged) throws {
        self.name = name
        self.mode = mode
        self.deltas = deltas
        let c = weights.config
        var per = [[LayerModule: [DeltaEntry]]](repeating: [:], count: c.layers)
        for (tensor, entries) in deltas {
            guard let (layer, module) = LayerModule.parse(tensor), layer < c.layers else {
                throw ModelError.badTensor(tensor, "not a delta target in this model (targets are model.layers.N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj}.weight, N < \(c.layers))")
            }
            let w = weights.layers[layer].matrix(module)
            for e in entries {
                if let problem = e.validate(rows: w.rows, cols: w.cols) { throw ModelError.badTensor(tensor, problem) }
                if !e.allFinite { throw ModelError.badTensor(tensor, "delta holds NaN or infinite values") }
            }
            per[layer][module, default: []] += entries
        }
        var merged = [[LayerModule: WeightMatrix]](repeating: [:], count: c.layers)
        var storage: [UnsafeMutablePointer<Float>] = []
        if mode == .merged {
            for (layer, modules) in per.enumerated() {
                for (module, entries) in modules {
                    let w = weights.layers[layer].matrix(module)
                    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: w.rows * w.cols)
                    for r in 0..<w.rows { w.widenRow(r, into: buffer + r * w.cols) }
                    for e in entries {
                        let d = e.densified(rows: w.rows, cols: w.cols)
                        for i in 0..<d.count { buffer[i] += d[i] }
                    }
                    storage.append(buffer)
                    merged[layer][module] = WeightMatrix(dtype: .f32, rows: w.rows, cols: w.cols, base: UnsafeRawPointer(buffer))
                }
            }
            per = [[LayerModule: [DeltaEntry]]](repeating: [:], count: c.layers)
        }
        perLayer = per
        mergedMatrices = merged
        mergedStorage = storage
    }

    deinit { for p in mergedStorage { p.deallocate() } }

    /// Bytes this variant holds beyond the shared base (deltas or merged copies).
    public var residentBytes: Int {
        let deltaBytes = deltas.values.joined().reduce(0) { $0 + $1.byteCount }
        let mergedBytes = mergedMatrices.joined().reduce(0) { $0 + $1.value.byteCount }
        return mode == .merged ? mergedBytes : deltaBytes
    }
}

extension DeltaEntry {
    var allFinite: Bool {
        switch self {
        case .dense(let v), .rows(_, let v), .columns(_, let v): v.allSatisfy(\.isFinite)
        case .lowRank(let a, let b, _, _): a.allSatisfy(\.isFinite) && b.allSatisfy(\.isFinite)
        }
    }
}

extension LayerWeights {
    public func matrix(_ module: LayerModule) -> WeightMatrix {
        switch module {
        case .q: q
        case .k: k
        case .v: v
        case .o: o
        case .gate: gate
        case .up: up
        case .down: down
        }
    }
}
