import LanguageModel
import TensorCore

/// A delta as a file holds it: entries keyed by target tensor name plus the provenance that
/// `__metadata__` carries (DESIGN.md, "Deltas and variants").
public struct Delta: Sendable, Equatable {
    /// Target tensor name (`model.layers.3.mlp.up_proj.weight`) → its corrections, which add up.
    public var entries: [String: [DeltaEntry]]
    public var metadata: DeltaMetadata

    public init(entries: [String: [DeltaEntry]] = [:], metadata: DeltaMetadata) {
        self.entries = entries
        self.metadata = metadata
    }

    /// Bytes the entries hold.
    public var byteCount: Int { entries.values.joined().reduce(0) { $0 + $1.byteCount } }

    /// `sha256:<hex>` of the entries alone: targets in name order, each entry's layout, sizes,
    /// indices (i64) and f32 values as they lie in memory (little-endian). The same numbers give
    /// the same hash whatever file, stored dtype or metadata carried them; any changed value
    /// gives another. Metadata is not hashed.
    public var contentHash: String {
        var h = SHA256Digest()
        func count(_ n: Int) { h.update([Int64(n)]) }
        for target in entries.keys.sorted() {
            let list = entries[target]!
            h.update(target + "\u{0}")
            count(list.count)
            for entry in list {
                switch entry {
                case .dense(let v):
                    h.update("dense\u{0}"); count(v.count); h.update(v)
                case .rows(let idx, let v):
                    h.update("rows\u{0}"); count(idx.count); h.update(idx.map(Int64.init)); count(v.count); h.update(v)
                case .columns(let idx, let v):
                    h.update("columns\u{0}"); count(idx.count); h.update(idx.map(Int64.init)); count(v.count); h.update(v)
                case .lowRank(let a, let b, let rank, let scale):
                    h.update("low_rank\u{0}"); count(rank); h.update([scale]); count(a.count); h.update(a); count(b.count); h.update(b)
                }
            }
        }
        return "sha256:" + h.hexDigest()
    }
}

/// `__metadata__` of a delta file. The keys are the ones `graft finetune` writes
/// (Sources/Training/LoRA.swift): `format`, `format_version`, `model_fingerprint`, `strategy`,
/// `parameters` (JSON text), `lora_scale`; any other key is kept in `extra` and written back.
public struct DeltaMetadata: Sendable, Equatable {
    public static let format = "graft-delta"
    public static let formatVersion = "1"

    public var modelFingerprint: String
    public var strategy: String
    /// The strategy's parameters as JSON text (`{}` when none).
    public var parameters: String
    public var extra: [String: String]

    public init(modelFingerprint: String, strategy: String, parameters: String = "{}", extra: [String: String] = [:]) {
        self.modelFingerprint = modelFingerprint
        self.strategy = strategy
        self.parameters = parameters
        self.extra = extra
    }

    /// Every key as it stands in the file (the variant's provenance).
    public var dictionary: [String: String] {
        var d = extra
        d["format"] = Self.format
        d["format_version"] = Self.formatVersion
        d["model_fingerprint"] = modelFingerprint
        d["strategy"] = strategy
        d["parameters"] = parameters
        return d
    }
}

/// The shape `[out, in]` of every matrix a delta may touch in `weights`, by target name: the
/// layers' projections, the embedding and (when untied) the lm head.
public func deltaTargets(of weights: ModelWeights) -> [String: (rows: Int, cols: Int)] {
    var out: [String: (rows: Int, cols: Int)] = [:]
    for (name, shape) in weights.deltaTargetShapes where shape.count == 2 { out[name] = (shape[0], shape[1]) }
    return out
}

/// The length of every 1-D tensor a delta may touch in `weights` (norm weights, Qwen2's q/k/v
/// biases), by target name. They take dense entries only.
public func vectorDeltaTargets(of weights: ModelWeights) -> [String: Int] {
    var out: [String: Int] = [:]
    for (name, shape) in weights.deltaTargetShapes where shape.count == 1 { out[name] = shape[0] }
    return out
}
