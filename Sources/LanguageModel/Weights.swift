import SafeTensors
import TensorCore

/// A vector parameter (norm weight) in its stored dtype, viewed in the mmap.
public struct VectorView: @unchecked Sendable {
    public let dtype: DType
    public let count: Int
    public let base: UnsafeRawPointer
}

/// One decoder block's parameters; shapes are Hugging Face's `[out, in]`.
public struct LayerWeights: @unchecked Sendable {
    public let attnNorm: VectorView      // (hidden)
    public let q: WeightMatrix           // (heads * headDim, hidden)
    public let k: WeightMatrix           // (kvHeads * headDim, hidden)
    public let v: WeightMatrix           // (kvHeads * headDim, hidden)
    public let o: WeightMatrix           // (hidden, heads * headDim)
    public let qBias: [Float]?           // (heads * headDim) — Qwen2
    public let kBias: [Float]?           // (kvHeads * headDim)
    public let vBias: [Float]?           // (kvHeads * headDim)
    public let mlpNorm: VectorView       // (hidden)
    public let gate: WeightMatrix        // (intermediate, hidden)
    public let up: WeightMatrix          // (intermediate, hidden)
    public let down: WeightMatrix        // (hidden, intermediate)
}

/// Every parameter of a model bound by name to views over its memory-mapped safetensors:
/// nothing is copied at load (biases, a few KB, are widened to f32).
public final class ModelWeights: @unchecked Sendable {
    public let config: ModelConfig
    /// Keeps the mapping alive for the views below.
    public let storage: SafeTensorsModel
    public let embed: WeightMatrix       // (vocab, hidden)
    public let finalNorm: VectorView     // (hidden)
    public let lmHead: WeightMatrix      // (vocab, hidden) — the embedding when tied
    public let layers: [LayerWeights]

    public init(config: ModelConfig, storage: SafeTensorsModel) throws {
        self.config = config
        self.storage = storage
        let c = config

        func tensor(_ name: String, _ shape: [Int]) throws -> (DType, UnsafeRawPointer) {
            guard storage.tensors[name] != nil else {
                throw ModelError.missingTensor(name, hint: "is this a \(c.modelType) checkpoint with the Hugging Face tensor names?")
            }
            let info = try storage.info(name)
            guard info.shape == shape else {
                throw ModelError.badTensor(name, "shape \(info.shape) but config.json implies \(shape)")
            }
            guard info.dtype == .f32 || info.dtype == .bf16 || info.dtype == .f16 else {
                throw ModelError.badTensor(name, "dtype \(info.dtype.rawValue) is not f32, bf16 or f16")
            }
            let data = try storage.data(name)
            guard let base = data.baseAddress ?? (info.byteCount == 0 ? UnsafeRawPointer(bitPattern: 1) : nil) else {
                throw ModelError.badTensor(name, "no data")
            }
            return (info.dtype, base)
        }
        func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> WeightMatrix {
            let (dtype, base) = try tensor(name, [rows, cols])
            return WeightMatrix(dtype: dtype, rows: rows, cols: cols, base: base)
        }
        func vector(_ name: String, _ n: Int) throws -> VectorView {
            let (dtype, base) = try tensor(name, [n])
            return VectorView(dtype: dtype, count: n, base: base)
        }
        func bias(_ name: String, _ n: Int) throws -> [Float]? {
            guard c.attentionBias else { return nil }
            let v = try vector(name, n)
            var out = [Float](repeating: 0, count: n)
            let m = WeightMatrix(dtype: v.dtype, rows: 1, cols: n, base: v.base)
            out.withUnsafeMutableBufferPointer { m.widenRow(0, into: $0.baseAddress!) }
            return out
        }

        let d = c.hiddenSize
        embed = try matrix("model.embed_tokens.weight", c.vocabSize, d)
        finalNorm = try vector("model.norm.weight", d)
        if storage.tensors["lm_head.weight"] != nil {
            lmHead = try matrix("lm_head.weight", c.vocabSize, d)
        } else if c.tieWordEmbeddings {
            lmHead = embed
        } else {
            throw ModelError.missingTensor("lm_head.weight", hint: "config.json says tie_word_embeddings is false")
        }
        layers = try (0..<c.layers).map { i in
            let p = "model.layers.\(i)."
            return LayerWeights(
                attnNorm: try vector(p + "input_layernorm.weight", d),
                q: try matrix(p + "self_attn.q_proj.weight", c.qDim, d),
                k: try matrix(p + "self_attn.k_proj.weight", c.kvDim, d),
                v: try matrix(p + "self_attn.v_proj.weight", c.kvDim, d),
                o: try matrix(p + "self_attn.o_proj.weight", d, c.qDim),
                qBias: try bias(p + "self_attn.q_proj.bias", c.qDim),
                kBias: try bias(p + "self_attn.k_proj.bias", c.kvDim),
                vBias: try bias(p + "self_attn.v_proj.bias", c.kvDim),
                mlpNorm: try vector(p + "post_attention_layernorm.weight", d),
                gate: try matrix(p + "mlp.gate_proj.weight", c.intermediateSize, d),
                up: try matrix(p + "mlp.up_proj.weight", c.intermediateSize, d),
                down: try matrix(p + "mlp.down_proj.weight", d, c.intermediateSize))
        }
    }

    /// Bytes of weights one decode step reads (every matrix once; the lm head once).
    public var bytesPerStep: Int {
        var total = lmHead.byteCount
        for l in layers {
            total += l.q.byteCount + l.k.byteCount + l.v.byteCount + l.o.byteCount
            total += l.gate.byteCount + l.up.byteCount + l.down.byteCount
        }
        return total
    }
}
