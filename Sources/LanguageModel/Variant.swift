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

    /// Bytes the entry takes as a delta file stores it (f32 values, i32 indices).
    public var byteCount: Int {
        switch self {
        case .dense(let v): v.count * 4
        case .rows(let i, let v), .columns(let i, let v): i.count * 4 + v.count * 4
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

/// The element type an unmerged variant keeps its delta values in. Decode reads them every
/// step beside the base weights, so their bytes cost throughput as the base's do.
/// - `f32`: the values exactly as given (4 bytes each).
/// - `bf16`: half the bytes; each value rounded to the nearest bf16 (relative error ≤ 2⁻⁹, the
///   precision the bf16 base itself is stored in, and finer than merging W + Δ into bf16 as
///   `graft variant apply` does).
/// - `auto` (the default): bf16 when the base matrices are stored in 16 bits (bf16 or f16),
///   f32 when the base is f32. Values that are already bf16 (a bf16 delta file) are exact
///   either way.
public enum DeltaValueType: String, Sendable, Codable, CaseIterable {
    case auto
    case f32
    case bf16

    /// The storage chosen for a base whose matrices are stored in `baseType`.
    public func resolved(baseType: DType) -> DType {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .auto: baseType == .f32 ? .f32 : .bf16
        }
    }
}

/// A 1-D parameter a delta may touch (dense entries only).
public enum VectorTarget: Hashable, Sendable {
    case attnNorm(Int)
    case mlpNorm(Int)
    case finalNorm
    case qBias(Int)
    case kBias(Int)
    case vBias(Int)
}

/// A tensor a delta may touch, parsed from its Hugging Face name.
public enum DeltaTarget: Hashable, Sendable {
    /// `model.layers.N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj}.weight`
    case layer(Int, LayerModule)
    /// `model.embed_tokens.weight`: the embedding, and the lm head too when they are tied.
    case embedding
    /// `lm_head.weight` of a model whose lm head is not tied to the embedding.
    case lmHead
    /// Norm weights and q/k/v biases.
    case vector(VectorTarget)
}

extension ModelWeights {
    /// Whether the lm head is its own tensor (not the embedding).
    public var hasSeparateLMHead: Bool { lmHead.base != embed.base }

    /// The target a tensor name denotes in this model, or nil (with why) when a delta may not
    /// touch it.
    public func deltaTarget(named name: String) -> Result<DeltaTarget, DeltaTargetError> {
        let c = config
        if name == "model.embed_tokens.weight" { return .success(.embedding) }
        if name == "lm_head.weight" {
            return hasSeparateLMHead ? .success(.lmHead)
                : .failure(.init("lm_head.weight is tied to model.embed_tokens.weight in this model: put the delta on model.embed_tokens.weight (it changes both)"))
        }
        if name == "model.norm.weight" { return .success(.vector(.finalNorm)) }
        if let (layer, module) = LayerModule.parse(name) {
            return layer < c.layers ? .success(.layer(layer, module)) : .failure(.init("layer \(layer) does not exist (the model has \(c.layers))"))
        }
        let prefix = "model.layers."
        if name.hasPrefix(prefix), let dot = name.dropFirst(prefix.count).firstIndex(of: "."),
           let layer = Int(name[name.index(name.startIndex, offsetBy: prefix.count)..<dot]) {
            let rest = name[name.index(after: dot)...]
            guard layer < c.layers else { return .failure(.init("layer \(layer) does not exist (the model has \(c.layers))")) }
            switch rest {
            case "input_layernorm.weight": return .success(.vector(.attnNorm(layer)))
            case "post_attention_layernorm.weight": return .success(.vector(.mlpNorm(layer)))
            case "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias":
                guard c.attentionBias else { return .failure(.init("this model has no attention biases")) }
                return .success(.vector(rest.hasPrefix("self_attn.q") ? .qBias(layer) : rest.hasPrefix("self_attn.k") ? .kBias(layer) : .vBias(layer)))
            default: break
            }
        }
        return .failure(.init("not a tensor of this model a delta can touch (targets: model.embed_tokens.weight, lm_head.weight when untied, model.norm.weight, and per layer N < \(c.layers) the q/k/v/o/gate/up/down weights, input_layernorm/post_attention_layernorm weights and, in Qwen2, the q/k/v biases)"))
    }

    /// The matrix a matrix target names.
    public func matrix(_ target: DeltaTarget) -> WeightMatrix? {
        switch target {
        case .layer(let l, let m): layers[l].matrix(m)
        case .embedding: embed
        case .lmHead: lmHead
        case .vector: nil
        }
    }

    /// A vector target's base values widened to f32.
    public func baseVector(_ v: VectorTarget) -> [Float] {
        func widen(_ view: VectorView) -> [Float] {
            var out = [Float](repeating: 0, count: view.count)
            let m = WeightMatrix(dtype: view.dtype, rows: 1, cols: view.count, base: view.base)
            out.withUnsafeMutableBufferPointer { m.widenRow(0, into: $0.baseAddress!) }
            return out
        }
        switch v {
        case .attnNorm(let l): return widen(layers[l].attnNorm)
        case .mlpNorm(let l): return widen(layers[l].mlpNorm)
        case .finalNorm: return widen(finalNorm)
        case .qBias(let l): return layers[l].qBias ?? []
        case .kBias(let l): return layers[l].kBias ?? []
        case .vBias(let l): return layers[l].vBias ?? []
        }
    }

    /// Every tensor a delta may touch → its shape (`[out, in]` or `[n]`).
    public var deltaTargetShapes: [String: [Int]] {
        let c = config
        var out: [String: [Int]] = ["model.embed_tokens.weight": [embed.rows, embed.cols], "model.norm.weight": [finalNorm.count]]
        if hasSeparateLMHead { out["lm_head.weight"] = [lmHead.rows, lmHead.cols] }
        for (layer, lw) in layers.enumerated() {
            for module in LayerModule.allCases {
                let m = lw.matrix(module)
                out[module.tensorName(layer: layer)] = [m.rows, m.cols]
            }
            let p = "model.layers.\(layer)."
            out[p + "input_layernorm.weight"] = [lw.attnNorm.count]
            out[p + "post_attention_layernorm.weight"] = [lw.mlpNorm.count]
            if c.attentionBias {
                out[p + "self_attn.q_proj.bias"] = [c.qDim]
                out[p + "self_attn.k_proj.bias"] = [c.kvDim]
                out[p + "self_attn.v_proj.bias"] = [c.kvDim]
            }
        }
        return out
    }
}

/// Why a tensor name is not a delta target.
public struct DeltaTargetError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One delta entry as the forward reads it: its values in the variant's storage type, in one
/// block of memory the kernels take directly (`gk_matmul`, as the base product).
final class PackedDelta: @unchecked Sendable {
    enum Kind { case dense, rows, columns, lowRank }
    let kind: Kind
    /// Row (rows) or column (columns) indices.
    let indices: [Int32]
    /// dense `[out, in]`; rows `[k, in]`; columns `[out, k]`; low-rank A `[r, in]`.
    let first: WeightMatrix
    /// low-rank B `[out, r]`.
    let second: WeightMatrix?
    let scale: Float
    /// rows: target row → position in `indices` (embedding lookups).
    let rowPosition: [Int32: Int]
    private let memory: UnsafeMutableRawPointer
    let byteCount: Int

    init(_ entry: DeltaEntry, rows out: Int, cols inDim: Int, dtype requested: DType) {
        var dtype = requested
        let (kind, idx, firstShape, secondShape, scale): (Kind, [Int], (Int, Int), (Int, Int)?, Float)
        let a: [Float], b: [Float]
        switch entry {
        case .dense(let v): (kind, idx, firstShape, secondShape, scale, a, b) = (.dense, [], (out, inDim), nil, 1, v, [])
        case .rows(let i, let v): (kind, idx, firstShape, secondShape, scale, a, b) = (.rows, i, (i.count, inDim), nil, 1, v, [])
        case .columns(let i, let v): (kind, idx, firstShape, secondShape, scale, a, b) = (.columns, i, (out, i.count), nil, 1, v, [])
        case .lowRank(let av, let bv, let r, let s): (kind, idx, firstShape, secondShape, scale, a, b) = (.lowRank, [], (r, inDim), (out, r), s, av, bv)
        }
        // A value too large for bf16 (it would round to infinity) keeps the entry in f32.
        if dtype == .bf16, (a + b).contains(where: { !bf16ToFloat(floatToBF16($0)).isFinite }) { dtype = .f32 }
        let count = a.count + b.count
        let memory = UnsafeMutableRawPointer.allocate(byteCount: max(count * dtype.size, 1), alignment: 64)
        for (values, offset) in [(a, 0), (b, a.count)] {
            switch dtype {
            case .bf16:
                let p = (memory + offset * 2).assumingMemoryBound(to: UInt16.self)
                for i in 0..<values.count { p[i] = floatToBF16(values[i]) }
            default:
                values.withUnsafeBytes { if let v = $0.baseAddress { (memory + offset * 4).copyMemory(from: v, byteCount: $0.count) } }
            }
        }
        self.memory = memory
        self.kind = kind
        self.indices = idx.map { Int32($0) }
        self.scale = scale
        self.first = WeightMatrix(dtype: dtype, rows: firstShape.0, cols: firstShape.1, base: UnsafeRawPointer(memory))
        let secondBase = UnsafeRawPointer(memory + a.count * dtype.size)
        self.second = secondShape.map { WeightMatrix(dtype: dtype, rows: $0.0, cols: $0.1, base: secondBase) }
        var position: [Int32: Int] = [:]
        if kind == .rows { for (i, r) in indices.enumerated() { position[r] = i } }
        self.rowPosition = position
        self.byteCount = count * dtype.size + indices.count * 4
    }

    deinit { memory.deallocate() }

    /// The entry with its stored values widened back to f32.
    var entry: DeltaEntry {
        func widen(_ m: WeightMatrix) -> [Float] {
            var v = [Float](repeating: 0, count: m.rows * m.cols)
            v.withUnsafeMutableBufferPointer { p in for r in 0..<m.rows { m.widenRow(r, into: p.baseAddress! + r * m.cols) } }
            return v
        }
        switch kind {
        case .dense: return .dense(values: widen(first))
        case .rows: return .rows(indices: indices.map(Int.init), values: widen(first))
        case .columns: return .columns(indices: indices.map(Int.init), values: widen(first))
        case .lowRank: return .lowRank(a: widen(first), b: widen(second!), rank: first.rows, scale: scale)
        }
    }

    /// dst[0..<cols] += Δ[r, :]: an embedding lookup of token r (`cols` is the hidden size).
    func addRow(_ r: Int, into dst: UnsafeMutablePointer<Float>, cols: Int, scratch: UnsafeMutablePointer<Float>) {
        switch kind {
        case .dense:
            first.widenRow(r, into: scratch)
            for c in 0..<cols { dst[c] += scratch[c] }
        case .rows:
            guard let i = rowPosition[Int32(r)] else { return }
            first.widenRow(i, into: scratch)
            for c in 0..<cols { dst[c] += scratch[c] }
        case .columns:
            first.widenRow(r, into: scratch)
            for (j, c) in indices.enumerated() { dst[Int(c)] += scratch[j] }
        case .lowRank:
            // Δ[r, :] = scale · B[r, :] · A, summed over the rank in order.
            let b = second!, rank = first.rows
            var coefficients = [Float](repeating: 0, count: rank)
            coefficients.withUnsafeMutableBufferPointer { b.widenRow(r, into: $0.baseAddress!) }
            var row = [Float](repeating: 0, count: cols)
            for k in 0..<rank {
                first.widenRow(k, into: scratch)
                for c in 0..<cols { row[c] += coefficients[k] * scratch[c] }
            }
            for c in 0..<cols { dst[c] += scale * row[c] }
        }
    }
}

/// A variant's private copies of the 1-D parameters its deltas touch (W + Δ in f32).
struct VariantVectors {
    var attnNorm: [[Float]?]
    var mlpNorm: [[Float]?]
    var qBias: [[Float]?]
    var kBias: [[Float]?]
    var vBias: [[Float]?]
    var finalNorm: [Float]?

    init(layers: Int) {
        attnNorm = Array(repeating: nil, count: layers)
        mlpNorm = attnNorm; qBias = attnNorm; kBias = attnNorm; vBias = attnNorm
    }

    subscript(_ v: VectorTarget) -> [Float]? {
        get {
            switch v {
            case .attnNorm(let l): attnNorm[l]
            case .mlpNorm(let l): mlpNorm[l]
            case .finalNorm: finalNorm
            case .qBias(let l): qBias[l]
            case .kBias(let l): kBias[l]
            case .vBias(let l): vBias[l]
            }
        }
        set {
            switch v {
            case .attnNorm(let l): attnNorm[l] = newValue
            case .mlpNorm(let l): mlpNorm[l] = newValue
            case .finalNorm: finalNorm = newValue
            case .qBias(let l): qBias[l] = newValue
            case .kBias(let l): kBias[l] = newValue
            case .vBias(let l): vBias[l] = newValue
            }
        }
    }

    var byteCount: Int {
        (attnNorm + mlpNorm + qBias + kBias + vBias + [finalNorm]).reduce(0) { $0 + ($1?.count ?? 0) * 4 }
    }
}

/// An immutable snapshot: the base weights plus deltas. Untouched tensors are the base's mmap.
/// The base variant is the one with no deltas.
///
/// Unmerged, a variant holds only its deltas, packed for the matmul kernels in `valueType`
/// (`DeltaValueType`); merged, a private f32 copy of each touched layer matrix. Deltas on the
/// embedding and lm head are always applied unmerged (a private copy would be the size of the
/// vocabulary); deltas on 1-D parameters (norm weights, biases) are always merged into small
/// private f32 copies.
public final class Variant: @unchecked Sendable {
    public let name: String
    public let mode: VariantMode
    /// The element type unmerged delta values are held in.
    public let valueType: DType
    /// The touched tensors' names.
    public let targets: [String]
    /// [layer][module] → the entries for that matrix (unmerged) — precomputed for the forward.
    let perLayer: [[LayerModule: [PackedDelta]]]
    /// Embedding entries (also applied to the lm head when it is tied) and lm head entries.
    let embedding: [PackedDelta]
    let lmHead: [PackedDelta]
    let vectors: VariantVectors
    /// The 1-D deltas as given (for `deltas`).
    private let vectorDeltas: [String: [DeltaEntry]]
    private let packedByName: [String: [PackedDelta]]
    /// [layer][module] → a private merged copy (merged mode).
    let mergedMatrices: [[LayerModule: WeightMatrix]]
    private let mergedStorage: [UnsafeMutablePointer<Float>]

    /// Builds and validates a variant of `weights`. Throws `ModelError.badTensor` for unknown
    /// names, wrong shapes or non-finite values.
    public init(name: String, weights: ModelWeights, deltas: [String: [DeltaEntry]], mode: VariantMode = .unmerged,
                valueType: DeltaValueType = .auto) throws {
        self.name = name
        self.mode = mode
        let stored = valueType.resolved(baseType: weights.layers.first?.up.dtype ?? weights.embed.dtype)
        self.valueType = stored
        self.targets = deltas.keys.sorted()
        let c = weights.config
        var per = [[LayerModule: [PackedDelta]]](repeating: [:], count: c.layers)
        var embedding: [PackedDelta] = [], lmHead: [PackedDelta] = []
        var vectors = VariantVectors(layers: c.layers)
        var vectorDeltas: [String: [DeltaEntry]] = [:]
        var packedByName: [String: [PackedDelta]] = [:]
        var merged = [[LayerModule: WeightMatrix]](repeating: [:], count: c.layers)
        var storage: [UnsafeMutablePointer<Float>] = []
        var built = false
        defer { if !built { for p in storage { p.deallocate() } } }
        for tensor in deltas.keys.sorted() {
            let entries = deltas[tensor]!
            let target: DeltaTarget
            switch weights.deltaTarget(named: tensor) {
            case .success(let t): target = t
            case .failure(let why): throw ModelError.badTensor(tensor, "not a delta target in this model: \(why)")
            }
            for e in entries where !e.allFinite { throw ModelError.badTensor(tensor, "delta holds NaN or infinite values") }
            if case .vector(let v) = target {
                var value = weights.baseVector(v)
                for e in entries {
                    guard case .dense(let d) = e else { throw ModelError.badTensor(tensor, "a 1-D tensor takes only dense deltas") }
                    guard d.count == value.count else { throw ModelError.badTensor(tensor, "dense delta has \(d.count) values, the tensor \(value.count)") }
                    for i in 0..<d.count { value[i] += d[i] }
                }
                vectors[v] = value
                vectorDeltas[tensor] = entries
                continue
            }
            let w = weights.matrix(target)!
            for e in entries {
                if let problem = e.validate(rows: w.rows, cols: w.cols) { throw ModelError.badTensor(tensor, problem) }
            }
            if mode == .merged, case .layer(let layer, let module) = target {
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: w.rows * w.cols)
                storage.append(buffer)
                for r in 0..<w.rows { w.widenRow(r, into: buffer + r * w.cols) }
                for e in entries {
                    let d = e.densified(rows: w.rows, cols: w.cols)
                    for i in 0..<d.count { buffer[i] += d[i] }
                }
                merged[layer][module] = WeightMatrix(dtype: .f32, rows: w.rows, cols: w.cols, base: UnsafeRawPointer(buffer))
                continue
            }
            let packed = entries.map { PackedDelta($0, rows: w.rows, cols: w.cols, dtype: stored) }
            packedByName[tensor] = packed
            switch target {
            case .layer(let layer, let module): per[layer][module, default: []] += packed
            case .embedding: embedding += packed
            case .lmHead: lmHead += packed
            case .vector: break
            }
        }
        if !weights.hasSeparateLMHead { lmHead = embedding }
        perLayer = per
        self.embedding = embedding
        self.lmHead = lmHead
        self.vectors = vectors
        self.vectorDeltas = vectorDeltas
        self.packedByName = packedByName
        mergedMatrices = merged
        mergedStorage = storage
        built = true
    }

    deinit { for p in mergedStorage { p.deallocate() } }

    /// The deltas this variant holds, by target tensor: unmerged entries widened back from their
    /// storage type (so rounded when that is bf16) and 1-D entries as given. A merged layer
    /// matrix keeps no entries (only its merged copy), so it is absent here.
    public var deltas: [String: [DeltaEntry]] {
        var out = vectorDeltas
        for (name, packed) in packedByName { out[name] = packed.map(\.entry) }
        return out
    }

    /// Bytes this variant holds beyond the shared base: packed deltas, merged copies, vectors.
    public var residentBytes: Int {
        let deltaBytes = packedByName.values.joined().reduce(0) { $0 + $1.byteCount }
        let mergedBytes = mergedMatrices.joined().reduce(0) { $0 + $1.value.byteCount }
        return deltaBytes + mergedBytes + vectors.byteCount
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
