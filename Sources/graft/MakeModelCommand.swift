import ArgumentParser
import Foundation
import SafeTensors
import TensorCore

/// `graft make-model`: writes a model folder of a known shape with seeded random weights, for
/// benchmarks at scale (a Llama-2-7B-shaped model is ~13.5 GB in bf16; keep it git-ignored).
struct MakeModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-model",
        abstract: "Write a random-weight model of a given shape (sharded safetensors) for benchmarks.")

    enum Shape: String, ExpressibleByArgument, CaseIterable {
        case llama2_7b = "llama2-7b"
        case llama2_13b = "llama2-13b"
        case smollm2_135m = "smollm2-135m"
    }

    @Option(help: "Shape: \(Shape.allCases.map(\.rawValue).joined(separator: ", ")).") var shape: Shape = .llama2_7b
    @Option(help: "Weight dtype: bf16, f16 or f32.") var dtype = "bf16"
    @Option(help: "Layers (override; fewer makes a quick test model).") var layers: Int?
    @Option(help: "Shard size in MiB.") var shardMiB = 2048
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(name: [.short, .long], help: "Output folder.") var output: String

    func run() throws {
        guard let dt = DType(rawValue: dtype.uppercased()), [.bf16, .f16, .f32].contains(dt) else {
            throw ValidationError("--dtype must be bf16, f16 or f32")
        }
        var (hidden, inter, heads, kv, nLayers, vocab) = (4096, 11008, 32, 32, 32, 32000)
        switch shape {
        case .llama2_7b: break
        case .llama2_13b: (hidden, inter, heads, kv, nLayers, vocab) = (5120, 13824, 40, 40, 40, 32000)
        case .smollm2_135m: (hidden, inter, heads, kv, nLayers, vocab) = (576, 1536, 9, 3, 30, 49152)
        }
        if let layers { nLayers = layers }
        let headDim = hidden / heads
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": inter, "num_attention_heads": heads, "num_key_value_heads": kv,
            "num_hidden_layers": nLayers, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "max_position_embeddings": 4096, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
            "torch_dtype": dt == .bf16 ? "bfloat16" : dt == .f16 ? "float16" : "float32",
            "graft_note": "random weights written by graft make-model --shape \(shape.rawValue) --seed \(seed): for benchmarks only",
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: output + "/config.json"))

        // Tensor table in Hugging Face names and [out, in] shapes.
        var tensors: [(String, [Int])] = [("model.embed_tokens.weight", [vocab, hidden])]
        for l in 0..<nLayers {
            let p = "model.layers.\(l)."
            tensors += [(p + "input_layernorm.weight", [hidden]),
                        (p + "self_attn.q_proj.weight", [heads * headDim, hidden]),
                        (p + "self_attn.k_proj.weight", [kv * headDim, hidden]),
                        (p + "self_attn.v_proj.weight", [kv * headDim, hidden]),
                        (p + "self_attn.o_proj.weight", [hidden, heads * headDim]),
                        (p + "post_attention_layernorm.weight", [hidden]),
                        (p + "mlp.gate_proj.weight", [inter, hidden]),
                        (p + "mlp.up_proj.weight", [inter, hidden]),
                        (p + "mlp.down_proj.weight", [hidden, inter])]
        }
        tensors += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]

        // Greedy sharding by size.
        var shards: [[(String, [Int])]] = [[]]
        var shardBytes = 0
        for t in tensors {
            let bytes = t.1.reduce(1, *) * dt.size
            if shardBytes + bytes > shardMiB << 20 && !shards[shards.count - 1].isEmpty {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(t)
            shardBytes += bytes
        }
        var weightMap: [String: String] = [:]
        var total = 0
        let start = Date()
        for (i, shard) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            var writer = SafeTensorsWriter(metadata: ["format": "pt"])
            for (name, shape) in shard {
                weightMap[name] = file
                let count = shape.reduce(1, *)
                total += count * dt.size
                let isNorm = shape.count == 1
                let tensorSeed = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(weightMap.count)
                try writer.add(name, dtype: dt, shape: shape) { buffer in
                    fillRandom(buffer, dtype: dt, count: count, seed: tensorSeed, constant: isNorm ? 1 : nil,
                               scale: 1 / Float(shape.last ?? 1).squareRoot())
                }
            }
            try writer.write(to: output + "/" + file)
            print("wrote \(file) (\(shard.count) tensors) — \(String(format: "%.1f", Double(total) / 1e9)) GB so far, \(String(format: "%.0f", Date().timeIntervalSince(start))) s")
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: output + "/model.safetensors.index.json"))
        print("\(output): \(tensors.count) tensors, \(String(format: "%.2f", Double(total) / 1e9)) GB in \(shards.count) shards")
    }
}

/// Uniform values in ±√3·scale (variance scale²), or a constant, from a seeded xorshift.
private func fillRandom(_ buffer: UnsafeMutableRawBufferPointer, dtype: DType, count: Int, seed: UInt64,
                        constant: Float?, scale: Float) {
    var state = seed | 1
    let amplitude = scale * 3.0.squareRoot().float
    for i in 0..<count {
        var v: Float
        if let constant {
            v = constant
        } else {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            v = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * amplitude
        }
        switch dtype {
        case .bf16: buffer.storeBytes(of: floatToBF16(v), toByteOffset: 2 * i, as: UInt16.self)
        case .f16: buffer.storeBytes(of: floatToF16(v), toByteOffset: 2 * i, as: UInt16.self)
        default: buffer.storeBytes(of: v, toByteOffset: 4 * i, as: Float.self)
        }
    }
}

private extension Double {
    var float: Float { Float(self) }
}
