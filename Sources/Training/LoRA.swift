import Foundation
import SafeTensors
import TensorCore

/// How a LoRA adapter starts (PKT.md).
public enum LoRAInitialization: Sendable {
    /// PEFT's default: A Kaiming-uniform (a = √5, so U(−1/√in, 1/√in)), B = 0. Seeded.
    case random(seed: UInt64)
    /// PiSSA (Meng et al. 2024) as PEFT's `pissa_init`: W = U S Vᵀ, S_r ÷= scale,
    /// A = √S_r V_rᵀ, B = U_r √S_r, and the base becomes W − scale·B·A.
    case pissa
    /// A given (B₀, A₀) per weight name (Seeking's SVD of the extracted sub-matrices), with the
    /// base compensated, W − scale·B₀A₀, so the model starts unchanged.
    case given([String: (b: Tensor, a: Tensor)])
}

/// LoRA hyper-parameters. `targets` are module names matched against the weight name's
/// module (`up_proj` matches `model.layers.3.mlp.up_proj.weight`).
public struct LoRAConfig: Sendable {
    public var rank: Int
    public var alpha: Float
    public var targets: [String]
    public var layers: [Int]?

    public static let defaultTargets = ["up_proj", "down_proj", "v_proj", "o_proj"]

    public init(rank: Int = 16, alpha: Float = 16, targets: [String] = LoRAConfig.defaultTargets, layers: [Int]? = nil) {
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
        self.layers = layers
    }

    public var scale: Float { alpha / Float(rank) }
}

/// The adapters attached to a model, and what an export needs: the initial (B₀, A₀) of a
/// compensated start (PiSSA, given), whose delta against the original base is B′A′ − B₀A₀.
public final class LoRAState: @unchecked Sendable {
    public let config: LoRAConfig
    public let names: [String]
    /// (B₀, A₀) of each adapted weight when the base was compensated.
    public let initial: [String: (b: Tensor, a: Tensor)]
    public var isCompensated: Bool { !initial.isEmpty }
    public let initialization: String

    init(config: LoRAConfig, names: [String], initial: [String: (b: Tensor, a: Tensor)], initialization: String) {
        self.config = config
        self.names = names
        self.initial = initial
        self.initialization = initialization
    }
}

extension TrainingModel {
    /// The weights a LoRA config adapts, in model order.
    public func loraTargets(_ config: LoRAConfig) -> [Linear] {
        layers.enumerated().flatMap { i, layer -> [Linear] in
            if let only = config.layers, !only.contains(i) { return [] }
            return layer.linears.filter { l in config.targets.contains { l.name.contains(".\($0).") } }
        }
    }

    /// Attaches adapters to every target weight. PiSSA and given starts compensate the base
    /// (which becomes an owned copy), so the logits are unchanged at step 0.
    public func attachLoRA(_ config: LoRAConfig, initialization: LoRAInitialization) throws -> LoRAState {
        guard config.rank >= 1 else { throw TrainingError.invalidArgument("LoRA rank must be ≥ 1") }
        let targets = loraTargets(config)
        guard !targets.isEmpty else { throw TrainingError.invalidArgument("no weight matches LoRA targets \(config.targets)") }
        let r = config.rank, scale = config.scale
        var initial: [String: (b: Tensor, a: Tensor)] = [:]
        var label = "random"
        switch initialization {
        case .random(let seed):
            var rng = SplitMix64(seed: seed)
            for l in targets {
                let a = Tensor(shape: [r, l.inFeatures])
                let bound = 1 / Float(l.inFeatures).squareRoot()
                for i in 0..<a.count { a[i] = Float.random(in: -bound..<bound, using: &rng) }
                l.lora = LoRAAdapter(a: a, b: Tensor(shape: [l.outFeatures, r]), scale: scale)
            }
        case .pissa:
            label = "pissa"
            for l in targets {
                guard r <= min(l.outFeatures, l.inFeatures) else {
                    throw TrainingError.invalidArgument("rank \(r) exceeds \(l.name)'s shape [\(l.outFeatures), \(l.inFeatures)]")
                }
                let svd = try SVD(l.weight, rows: l.outFeatures, cols: l.inFeatures)
                let a = Tensor(shape: [r, l.inFeatures]), b = Tensor(shape: [l.outFeatures, r])
                for i in 0..<r {
                    let root = (svd.s[i] / scale).squareRoot()
                    for c in 0..<l.inFeatures { a[i * l.inFeatures + c] = root * svd.vt[i * l.inFeatures + c] }
                    for o in 0..<l.outFeatures { b[o * r + i] = svd.u[o * svd.rank + i] * root }
                }
                try compensate(l, b: b, a: a, scale: scale)
                initial[l.name] = (Tensor(copying: b), Tensor(copying: a))
                l.lora = LoRAAdapter(a: a, b: b, scale: scale)
            }
        case .given(let pairs):
            label = "given"
            for l in targets {
                guard let (b0, a0) = pairs[l.name] else { throw TrainingError.invalidArgument("no initial (B, A) for \(l.name)") }
                guard a0.shape == [r, l.inFeatures], b0.shape == [l.outFeatures, r] else {
                    throw TrainingError.shapeMismatch(l.name, expected: [l.outFeatures, r, l.inFeatures], got: b0.shape + a0.shape)
                }
                try compensate(l, b: b0, a: a0, scale: scale)
                initial[l.name] = (Tensor(copying: b0), Tensor(copying: a0))
                l.lora = LoRAAdapter(a: Tensor(copying: a0), b: Tensor(copying: b0), scale: scale)
            }
        }
        return LoRAState(config: config, names: targets.map(\.name), initial: initial, initialization: label)
    }

    /// W ← W − scale·B·A.
    private func compensate(_ l: Linear, b: Tensor, a: Tensor, scale: Float) throws {
        l.makeWritable()
        gemm(transA: false, transB: false, m: l.outFeatures, n: l.inFeatures, k: a.shape[0], alpha: -scale,
             b.data, lda: a.shape[0], a.data, ldb: l.inFeatures, beta: 1, l.weight, ldc: l.inFeatures, pool: pool)
    }

    /// The low-rank delta against the *original* base of each adapted weight: (B′, A′), or
    /// after a compensated start [B′, −B₀] and [A′; A₀] (rank 2r: B′A′ − B₀A₀, as PEFT's
    /// convert_pissa_to_lora). Returns name → (B [out, r], A [r, in]).
    public func loraDelta(_ state: LoRAState) -> [(name: String, b: Tensor, a: Tensor)] {
        state.names.compactMap { name in
            guard let l = linear(named: name), let lora = l.lora else { return nil }
            guard let (b0, a0) = state.initial[name] else { return (name, Tensor(copying: lora.b), Tensor(copying: lora.a)) }
            let r = lora.rank, out = l.outFeatures, inF = l.inFeatures
            let b = Tensor(shape: [out, 2 * r]), a = Tensor(shape: [2 * r, inF])
            for o in 0..<out {
                for j in 0..<r {
                    b[o * 2 * r + j] = lora.b[o * r + j]
                    b[o * 2 * r + r + j] = -b0[o * r + j]
                }
            }
            a.data.update(from: lora.a.data, count: r * inF)
            (a.data + r * inF).update(from: a0.data, count: r * inF)
            return (name, b, a)
        }
    }

    /// The model's fingerprint (`ModelWeights.fingerprint`): deltas and checkpoints name it.
    public var fingerprint: String { weights.fingerprint }

    /// Writes the adapters as a Graft low-rank delta (DESIGN.md): `<name>.lora_a` [r, in],
    /// `<name>.lora_b` [out, r] in f32, the scale and provenance in `__metadata__`.
    public func saveLoRADelta(_ state: LoRAState, to path: String, strategy: String = "finetune-lora",
                              parameters: [String: String] = [:]) throws {
        var meta: [String: String] = [
            "format": "graft-delta", "format_version": "1", "model_fingerprint": fingerprint,
            "strategy": strategy, "lora_scale": "\(state.config.scale)", "lora_alpha": "\(state.config.alpha)",
            "lora_rank": "\(state.config.rank)", "lora_init": state.initialization,
            "lora_compensated": state.isCompensated ? "true" : "false",
        ]
        if let p = try? JSONSerialization.data(withJSONObject: parameters, options: [.sortedKeys]) {
            meta["parameters"] = String(data: p, encoding: .utf8)
        }
        var writer = SafeTensorsWriter(metadata: meta)
        for (name, b, a) in loraDelta(state) {
            try writer.add(name + ".lora_a", dtype: .f32, shape: a.shape, values: a.values)
            try writer.add(name + ".lora_b", dtype: .f32, shape: b.shape, values: b.values)
        }
        try writer.write(to: path)
    }

    /// Writes a PEFT adapter folder: adapter_config.json and adapter_model.safetensors
    /// (`base_model.model.<module>.lora_A.weight` …). A compensated start is exported at rank
    /// 2r with alpha 2·alpha (same scale), as PEFT's convert_pissa_to_lora does.
    public func savePEFTAdapter(_ state: LoRAState, directory: String, baseModel: String = "") throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let factor = state.isCompensated ? 2 : 1
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        for (name, b, a) in loraDelta(state) {
            let module = "base_model.model." + String(name.dropLast(7))
            try writer.add(module + ".lora_A.weight", dtype: .f32, shape: a.shape, values: a.values)
            try writer.add(module + ".lora_B.weight", dtype: .f32, shape: b.shape, values: b.values)
        }
        try writer.write(to: directory + "/adapter_model.safetensors")
        let configJSON: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": state.config.rank * factor,
            "lora_alpha": Double(state.config.alpha) * Double(factor), "lora_dropout": 0.0, "bias": "none",
            "fan_in_fan_out": false, "init_lora_weights": true, "use_rslora": false, "use_dora": false,
            "target_modules": state.config.targets, "base_model_name_or_path": baseModel,
            "inference_mode": true, "modules_to_save": NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: configJSON, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/adapter_config.json"))
    }
}

/// Reads the low-rank entries of a Graft delta file: name → (B, A) and the scale.
public func readLoRADelta(path: String) throws -> (pairs: [String: (b: Tensor, a: Tensor)], scale: Float, rank: Int) {
    let file = try SafeTensorsFile(path: path)
    var pairs: [String: (b: Tensor, a: Tensor)] = [:]
    func load(_ name: String) throws -> Tensor {
        let info = try file.info(name)
        guard info.dtype == .f32 || info.dtype == .bf16 || info.dtype == .f16, info.shape.count == 2 else {
            throw TrainingError.invalidData("\(name): expected a 2-D float tensor")
        }
        let t = Tensor(shape: info.shape)
        let raw = try file.data(name)
        let m = WeightMatrix(dtype: info.dtype, rows: info.shape[0], cols: info.shape[1], base: raw.baseAddress!)
        for r in 0..<info.shape[0] { m.widenRow(r, into: t.data + r * info.shape[1]) }
        return t
    }
    var rank = 0
    for name in file.names where name.hasSuffix(".lora_a") {
        let base = String(name.dropLast(7))
        let a = try load(name), b = try load(base + ".lora_b")
        guard a.shape[0] == b.shape[1] else { throw TrainingError.invalidData("\(base): lora_a and lora_b ranks differ") }
        rank = max(rank, a.shape[0])
        pairs[base] = (b, a)
    }
    guard let s = file.metadata["lora_scale"].flatMap(Float.init) else {
        throw TrainingError.invalidData("\(path) has no lora_scale in __metadata__")
    }
    return (pairs, s, rank)
}
