import Foundation

/// The fields of a Hugging Face `config.json` that Llama (Llama-2/3, SmolLM2) and Qwen2 need.
/// `CodingKeys` carry the Hugging Face names; `validate()` rejects shapes the engine cannot run.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var modelType: String
    public var architectures: [String]?
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var heads: Int
    public var kvHeads: Int
    public var layers: Int
    public var vocabSize: Int
    public var rmsNormEps: Float
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var explicitHeadDim: Int?
    /// q/k/v projections carry biases (Qwen2 always; Llama when `attention_bias` is true).
    public var attentionBias: Bool
    public var rope: RoPEConfig
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]

    public var headDim: Int { explicitHeadDim ?? hiddenSize / heads }
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    /// Matmul FLOPs of one token through every layer's seven projections, 2 per multiply-add
    /// (no lm head, no attention): the part of a step's FLOPs every token pays.
    public var layerMatmulFLOPsPerToken: Double {
        let d = Double(hiddenSize), f = Double(intermediateSize)
        return Double(layers) * 2 * (d * Double(qDim) + 2 * d * Double(kvDim) + Double(qDim) * d + 3 * d * f)
    }

    /// Matmul FLOPs of one decode step of `batch` sequences, 2 per multiply-add: every layer's
    /// seven projections and the lm head, once per sequence (attention's dot products not
    /// counted). `graft bench` sets it against the FMA-only loop's rate (the compute bound).
    public func decodeMatmulFLOPs(batch: Int) -> Double {
        Double(batch) * (layerMatmulFLOPsPerToken + 2 * Double(hiddenSize) * Double(vocabSize))
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case architectures
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case heads = "num_attention_heads"
        case kvHeads = "num_key_value_heads"
        case layers = "num_hidden_layers"
        case vocabSize = "vocab_size"
        case rmsNormEps = "rms_norm_eps"
        case maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings"
        case explicitHeadDim = "head_dim"
        case attentionBias = "attention_bias"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decode(String.self, forKey: .modelType)
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        heads = try c.decode(Int.self, forKey: .heads)
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? heads
        layers = try c.decode(Int.self, forKey: .layers)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        explicitHeadDim = try c.decodeIfPresent(Int.self, forKey: .explicitHeadDim)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? (modelType == "qwen2")
        // Newer config.json files write `rope_parameters` (theta and scaling in one object)
        // instead of `rope_theta` + `rope_scaling`: accept both.
        if let params = try c.decodeIfPresent(RoPEConfig.self, forKey: .ropeParameters) {
            rope = params
        } else {
            var r = try c.decodeIfPresent(RoPEConfig.self, forKey: .ropeScaling) ?? RoPEConfig()
            r.theta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? r.theta
            rope = r
        }
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        if let one = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) {
            eosTokenIds = [one]
        } else {
            eosTokenIds = try c.decodeIfPresent([Int].self, forKey: .eosTokenId) ?? []
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encodeIfPresent(architectures, forKey: .architectures)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(heads, forKey: .heads)
        try c.encode(kvHeads, forKey: .kvHeads)
        try c.encode(layers, forKey: .layers)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encodeIfPresent(explicitHeadDim, forKey: .explicitHeadDim)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(rope, forKey: .ropeParameters)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenIds, forKey: .eosTokenId)
    }

    /// Reads and validates `config.json` in a model folder.
    public static func load(directory: String) throws -> ModelConfig {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.missingFile(path, hint: "a model folder holds config.json, tokenizer.json and model.safetensors; run tools/provision")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let error as DecodingError {
            throw ModelError.invalidConfig(path, describe(error))
        } catch {
            throw ModelError.invalidConfig(path, "\(error)")
        }
        try config.validate(path: path)
        return config
    }

    public func validate(path: String = "config.json") throws {
        let supported = ["llama", "qwen2", "mistral"]
        guard supported.contains(modelType) else {
            throw ModelError.invalidConfig(path, "model_type '\(modelType)' is not supported (supported: \(supported.joined(separator: ", ")))")
        }
        func positive(_ v: Int, _ name: String) throws {
            if v <= 0 { throw ModelError.invalidConfig(path, "\(name) must be positive, got \(v)") }
        }
        try positive(hiddenSize, "hidden_size")
        try positive(intermediateSize, "intermediate_size")
        try positive(heads, "num_attention_heads")
        try positive(kvHeads, "num_key_value_heads")
        try positive(layers, "num_hidden_layers")
        try positive(vocabSize, "vocab_size")
        if heads % kvHeads != 0 {
            throw ModelError.invalidConfig(path, "num_attention_heads (\(heads)) is not a multiple of num_key_value_heads (\(kvHeads))")
        }
        if explicitHeadDim == nil && hiddenSize % heads != 0 {
            throw ModelError.invalidConfig(path, "hidden_size (\(hiddenSize)) is not a multiple of num_attention_heads (\(heads)) and no head_dim is given")
        }
        if headDim % 2 != 0 { throw ModelError.invalidConfig(path, "head_dim \(headDim) must be even for RoPE") }
        guard rmsNormEps.isFinite, rmsNormEps >= 0 else {
            throw ModelError.invalidConfig(path, "rms_norm_eps must be a finite non-negative number")
        }
        try rope.validate(path: path)
    }
}

/// Rotary position embedding parameters: plain (`default`) or Llama-3 frequency scaling.
public struct RoPEConfig: Codable, Sendable, Equatable {
    public var theta: Double = 10000
    public var type: String = "default"
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    enum CodingKeys: String, CodingKey {
        case theta = "rope_theta"
        case type = "rope_type"
        case legacyType = "type"
        case factor
        case lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        theta = try c.decodeIfPresent(Double.self, forKey: .theta) ?? 10000
        type = try c.decodeIfPresent(String.self, forKey: .type)
            ?? c.decodeIfPresent(String.self, forKey: .legacyType) ?? "default"
        factor = try c.decodeIfPresent(Double.self, forKey: .factor)
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(theta, forKey: .theta)
        try c.encode(type, forKey: .type)
        try c.encodeIfPresent(factor, forKey: .factor)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
    }

    func validate(path: String) throws {
        guard theta.isFinite, theta > 0 else { throw ModelError.invalidConfig(path, "rope_theta must be positive") }
        switch type {
        case "default":
            break
        case "llama3":
            guard let f = factor, f > 0, let lo = lowFreqFactor, let hi = highFreqFactor, hi > lo,
                  let orig = originalMaxPositionEmbeddings, orig > 0 else {
                throw ModelError.invalidConfig(path, "llama3 rope scaling needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings")
            }
        default:
            throw ModelError.invalidConfig(path, "rope type '\(type)' is not supported (default, llama3)")
        }
    }

    /// Inverse frequencies for a head of size `dim`, as transformers computes them
    /// (`_compute_default_rope_parameters` and `_compute_llama3_parameters`).
    public func inverseFrequencies(headDim dim: Int) -> [Double] {
        let base = (0..<(dim / 2)).map { i in
            // In PyTorch: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in f32.
            Double(Float(1.0) / Float(pow(theta, Double(Float(2 * i) / Float(dim)))))
        }
        guard type == "llama3", let factor, let lowFreqFactor, let highFreqFactor,
              let orig = originalMaxPositionEmbeddings else { return base }
        let lowWavelen = Double(orig) / lowFreqFactor
        let highWavelen = Double(orig) / highFreqFactor
        return base.map { f in
            let wavelen = 2 * Double.pi / f
            if wavelen < highWavelen { return f }
            if wavelen > lowWavelen { return f / factor }
            let smooth = (Double(orig) / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
            return (1 - smooth) * f / factor + smooth * f
        }
    }
}

private func describe(_ error: DecodingError) -> String {
    func path(_ ctx: DecodingError.Context) -> String {
        ctx.codingPath.map(\.stringValue).joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, _): return "missing key '\(key.stringValue)'"
    case .typeMismatch(_, let ctx): return "'\(path(ctx))' has the wrong type: \(ctx.debugDescription)"
    case .valueNotFound(_, let ctx): return "'\(path(ctx))' is null"
    case .dataCorrupted(let ctx): return "not valid JSON at '\(path(ctx))': \(ctx.debugDescription)"
    @unknown default: return "\(error)"
    }
}
