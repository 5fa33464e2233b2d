import Foundation
import LanguageModel
import SafeTensors
import TensorCore

/// One decoder block's parameters as training sees them.
public final class TrainingLayer: @unchecked Sendable {
    public let attnNorm: VectorParameter  // (hidden)
    public let q: Linear                  // (heads * headDim, hidden), bias for Qwen2
    public let k: Linear                  // (kvHeads * headDim, hidden)
    public let v: Linear                  // (kvHeads * headDim, hidden)
    public let o: Linear                  // (hidden, heads * headDim)
    public let mlpNorm: VectorParameter   // (hidden)
    public let gate: Linear               // (intermediate, hidden)
    public let up: Linear                 // (intermediate, hidden)
    public let down: Linear               // (hidden, intermediate)

    init(index i: Int, weights w: LayerWeights, storage: AnyObject) {
        let p = "model.layers.\(i)."
        attnNorm = VectorParameter(name: p + "input_layernorm.weight", view: w.attnNorm)
        q = Linear(name: p + "self_attn.q_proj.weight", matrix: w.q, storage: storage)
        k = Linear(name: p + "self_attn.k_proj.weight", matrix: w.k, storage: storage)
        v = Linear(name: p + "self_attn.v_proj.weight", matrix: w.v, storage: storage)
        o = Linear(name: p + "self_attn.o_proj.weight", matrix: w.o, storage: storage)
        mlpNorm = VectorParameter(name: p + "post_attention_layernorm.weight", view: w.mlpNorm)
        gate = Linear(name: p + "mlp.gate_proj.weight", matrix: w.gate, storage: storage)
        up = Linear(name: p + "mlp.up_proj.weight", matrix: w.up, storage: storage)
        down = Linear(name: p + "mlp.down_proj.weight", matrix: w.down, storage: storage)
        if let b = w.qBias { q.bias = Tensor(shape: [b.count], values: b) }
        if let b = w.kBias { k.bias = Tensor(shape: [b.count], values: b) }
        if let b = w.vBias { v.bias = Tensor(shape: [b.count], values: b) }
    }

    public var linears: [Linear] { [q, k, v, o, gate, up, down] }
}

/// A Llama/Qwen2 model prepared for training (issue 7): parameters in f32 (frozen f32 weights
/// stay views of the mmap), and the forward that saves what the backward needs, written out by
/// hand as llm.c does. Gradients are asked for per named tensor; deltas and LoRA adapters are
/// attached to `Linear`s. One step at a time: the model owns its scratch memory.
public final class TrainingModel: @unchecked Sendable {
    public let config: ModelConfig
    public let pool: WorkerPool
    /// Keeps the mmap'd weights alive for the views below.
    public let weights: ModelWeights
    public let embed: Linear              // (vocab, hidden)
    /// The output projection: the same object as `embed` when the embeddings are tied, so
    /// their gradients add up in one buffer as PyTorch's do.
    public let lmHead: Linear
    public let finalNorm: VectorParameter
    public let layers: [TrainingLayer]
    public var isTied: Bool { lmHead === embed }

    let ropeCos: [Float]
    let ropeSin: [Float]
    let buffers = StepBuffers()
    /// Bytes a training step may spend keeping every layer's activations instead of
    /// recomputing each layer's in the backward (nil: a quarter of MemAvailable at the step,
    /// at most 4 GiB; 0: always recompute). The gradients are the same floats either way.
    public var keptActivationsBudgetBytes: Int? = nil
    /// Whether the last training step kept every layer's activations (no recompute).
    public var lastStepKeptActivations: Bool { !buffers.kept.isEmpty }

    func keptActivationsBudget() -> Int {
        if let b = keptActivationsBudgetBytes { return b }
        return min(4 << 30, (availableMemoryBytes() ?? 0) / 4)
    }

    public init(weights: ModelWeights, pool: WorkerPool) {
        let c = weights.config
        config = c
        self.pool = pool
        self.weights = weights
        embed = Linear(name: "model.embed_tokens.weight", matrix: weights.embed, storage: weights)
        if weights.lmHead.base == weights.embed.base {
            lmHead = embed
        } else {
            lmHead = Linear(name: "lm_head.weight", matrix: weights.lmHead, storage: weights)
        }
        finalNorm = VectorParameter(name: "model.norm.weight", view: weights.finalNorm)
        layers = weights.layers.enumerated().map { TrainingLayer(index: $0, weights: $1, storage: weights) }

        // cos/sin tables as LanguageModel.Model computes them (inv_freq · position in f32).
        let half = c.headDim / 2
        let inv = c.rope.inverseFrequencies(headDim: c.headDim).map { Float($0) }
        let positions = c.maxPositionEmbeddings
        var cs = [Float](repeating: 0, count: positions * half), sn = cs
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Double(inv[i] * Float(p))
                cs[p * half + i] = Float(cos(angle))
                sn[p * half + i] = Float(sin(angle))
            }
        }
        ropeCos = cs
        ropeSin = sn
    }

    /// Opens a Hugging Face model folder.
    public static func load(directory: String, pool: WorkerPool = WorkerPool()) throws -> TrainingModel {
        let config = try ModelConfig.load(directory: directory)
        let storage = try SafeTensorsModel(directory: directory)
        return TrainingModel(weights: try ModelWeights(config: config, storage: storage), pool: pool)
    }

    // MARK: Parameters by name

    /// Every weight matrix, the embedding first, the lm head last (once when tied).
    public var linears: [Linear] {
        var all = [embed]
        for l in layers { all += l.linears }
        if !isTied { all.append(lmHead) }
        return all
    }

    public var vectors: [VectorParameter] {
        layers.flatMap { [$0.attnNorm, $0.mlpNorm] } + [finalNorm]
    }

    /// The Linear whose weight (`….weight`) or bias (`….bias`) has this Hugging Face name.
    public func linear(named name: String) -> Linear? {
        let weightName = name.hasSuffix(".bias") ? String(name.dropLast(5)) + ".weight" : name
        if weightName == "lm_head.weight" && isTied { return nil }
        return linears.first { $0.name == weightName }
    }

    public func vector(named name: String) -> VectorParameter? {
        vectors.first { $0.name == name }
    }

    /// Names of every trainable tensor, in the Hugging Face spelling.
    public var parameterNames: [String] {
        var names: [String] = []
        for l in linears {
            names.append(l.name)
            if l.bias != nil { names.append(String(l.name.dropLast(7)) + ".bias") }
        }
        return names + vectors.map(\.name)
    }

    public var parameterCount: Int {
        linears.reduce(0) { $0 + $1.parameterCount } + vectors.reduce(0) { $0 + $1.value.count }
    }

    /// Asks for ∂loss/∂(tensor), or a row/column subset of it, from now on (accumulated until
    /// `zeroGradients`).
    public func requestGradient(_ name: String, selection: GradientSelection = .full) throws {
        if let v = vector(named: name) {
            guard selection == .full else { throw TrainingError.invalidSelection(name, "vectors take the full gradient") }
            v.gradient = Tensor(shape: [v.value.count])
            return
        }
        guard let l = linear(named: name) else { throw TrainingError.unknownTensor(name) }
        if name.hasSuffix(".bias") {
            guard let b = l.bias else { throw TrainingError.unknownTensor(name) }
            guard selection == .full else { throw TrainingError.invalidSelection(name, "biases take the full gradient") }
            l.biasGradient = Tensor(shape: [b.count])
            return
        }
        try checkSelection(selection, name: name, rows: l.outFeatures, cols: l.inFeatures)
        l.weightGradient = Gradient(selection: selection, rows: l.outFeatures, cols: l.inFeatures)
    }

    /// Asks for the gradient of every parameter (a full fine-tune, or a reference test).
    public func requestAllGradients() {
        for name in parameterNames { try? requestGradient(name) }
    }

    /// The accumulated gradient of a named tensor, shaped as its selection.
    public func gradient(_ name: String) -> Tensor? {
        if let v = vector(named: name) { return v.gradient }
        guard let l = linear(named: name) else { return nil }
        if name.hasSuffix(".bias") { return l.biasGradient }
        l.weightGradient?.materialize()
        return l.weightGradient?.tensor
    }

    /// The value of a named tensor (f32, [out, in] or [n]), without any delta or adapter.
    public func parameter(_ name: String) -> UnsafeMutablePointer<Float>? {
        if let v = vector(named: name) { return v.value.data }
        guard let l = linear(named: name) else { return nil }
        return name.hasSuffix(".bias") ? l.bias?.data : l.weight
    }

    /// Attaches (or, with nil, removes) a delta added to a named weight; its gradient is then
    /// available as `deltaGradient(name)`.
    public func setDelta(_ name: String, _ delta: WeightDelta?) throws {
        guard let l = linear(named: name), !name.hasSuffix(".bias") else { throw TrainingError.unknownTensor(name) }
        if let delta {
            try checkSelection(delta.selection, name: name, rows: l.outFeatures, cols: l.inFeatures)
            let expected = delta.selection.shape(rows: l.outFeatures, cols: l.inFeatures)
            guard delta.values.shape == expected else {
                throw TrainingError.shapeMismatch(name, expected: expected, got: delta.values.shape)
            }
        }
        l.delta = delta
    }

    public func deltaGradient(_ name: String) -> Tensor? {
        linear(named: name)?.deltaGradient?.tensor
    }

    /// Zeroes every accumulated gradient (weights, biases, norms, deltas, adapters).
    public func zeroGradients() {
        for l in linears {
            l.weightGradient?.zeroLazily()
            l.weightGradient?.materialize()
            l.deltaGradient?.zeroLazily()
            l.deltaGradient?.materialize()
            l.biasGradient?.zero()
            l.lora?.gradA.zero()
            l.lora?.gradB.zero()
        }
        for v in vectors { v.gradient?.zero() }
    }

    /// `zeroGradients` for a step about to run a backward: the weight and delta gradients are
    /// zeroed by their first product (see `Gradient.zeroLazily`); `lossAndGradients` writes
    /// the zeros of any it did not reach before it returns.
    func zeroGradientsLazily() {
        for l in linears {
            l.weightGradient?.zeroLazily()
            l.deltaGradient?.zeroLazily()
            l.biasGradient?.zero()
            l.lora?.gradA.zero()
            l.lora?.gradB.zero()
        }
        for v in vectors { v.gradient?.zero() }
    }

    /// Writes every pending lazy zero (a gradient the backward did not reach).
    func materializeGradients() {
        for l in linears {
            l.weightGradient?.materialize()
            l.deltaGradient?.materialize()
        }
    }

    private func checkSelection(_ s: GradientSelection, name: String, rows: Int, cols: Int) throws {
        switch s {
        case .full: break
        case .rows(let r):
            guard r.allSatisfy({ $0 >= 0 && $0 < rows }), Set(r).count == r.count else {
                throw TrainingError.invalidSelection(name, "row indices must be distinct and in 0..<\(rows)")
            }
        case .columns(let c):
            guard c.allSatisfy({ $0 >= 0 && $0 < cols }), Set(c).count == c.count else {
                throw TrainingError.invalidSelection(name, "column indices must be distinct and in 0..<\(cols)")
            }
        }
    }
}

/// Errors of the training engine; each carries a hint.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case unknownTensor(String)
    case invalidSelection(String, String)
    case shapeMismatch(String, expected: [Int], got: [Int])
    case invalidBatch(String)
    case insufficientMemory(needed: Int, available: Int, what: String)
    case invalidData(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unknownTensor(let n): "no tensor named '\(n)' in the model (hint: Hugging Face names such as model.layers.0.mlp.up_proj.weight)"
        case .invalidSelection(let n, let why): "invalid selection for '\(n)': \(why)"
        case .shapeMismatch(let n, let e, let g): "'\(n)': shape \(g), expected \(e)"
        case .invalidBatch(let why): "invalid batch: \(why)"
        case .insufficientMemory(let needed, let available, let what):
            "\(what) needs about \(needed / (1 << 20)) MiB but only \(available / (1 << 20)) MiB are available (hint: train LoRA instead, --lora-rank)"
        case .invalidData(let why): "invalid training data: \(why)"
        case .invalidArgument(let why): why
        }
    }
}
