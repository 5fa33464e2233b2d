import Foundation
import Testing
@testable import Training

/// Gradients of every parameter kind against PyTorch autograd (tools/gen_training_fixtures.py):
/// a right-padded batch with a prompt mask, GQA (4 heads, 2 KV heads), LoRA on up/down/v/o,
/// dense, row- and column-sparse deltas, Qwen2 biases, tied embeddings, bf16/f16 storage,
/// Llama-3 RoPE scaling.
@Suite struct GradientTests {
    static let models = ["llama-tiny-f32", "qwen2-tiny-f32", "llama-tiny-bf16", "llama3-tiny-f16"]

    /// Attaches the fixture's adapters and deltas and asks for every gradient.
    static func prepare(_ model: TrainingModel, _ ref: Reference) throws {
        model.requestAllGradients()
        let scale = Float(Int(ref.file.metadata["lora_alpha"]!)!) / Float(Int(ref.file.metadata["lora_rank"]!)!)
        for name in ref.file.names where name.hasPrefix("lora.") && name.hasSuffix(".a") {
            let key = String(name.dropFirst(5).dropLast(2))
            let l = try #require(model.linear(named: key))
            l.lora = LoRAAdapter(a: try ref.tensor("lora.\(key).a"), b: try ref.tensor("lora.\(key).b"), scale: scale)
        }
        let kinds = try JSONDecoder().decode([String: String].self, from: Data(ref.file.metadata["kind"]!.utf8))
        for (key, kind) in kinds {
            let values = try ref.tensor("delta.\(key).values")
            switch kind {
            case "dense": try model.setDelta(key, .dense(values))
            case "rows": try model.setDelta(key, .rows(try ref.ints("delta.\(key).indices"), values))
            default: try model.setDelta(key, .columns(try ref.ints("delta.\(key).indices"), values))
            }
        }
    }

    /// Keeping every layer's activations and recomputing each layer's in the backward
    /// (activation checkpointing) give the same gradients, bit for bit.
    @Test(arguments: ["qwen2-tiny-f32", "llama-tiny-bf16"])
    func keptActivationsMatchRecompute(_ name: String) throws {
        let ref = try Reference("grads-\(name).safetensors")
        var grads: [[Float]] = []
        for budget in [0, Int.max / 2] {
            let model = try loadTiny(name)
            try Self.prepare(model, ref)
            model.keptActivationsBudgetBytes = budget
            try model.lossAndGradients(try ref.batch())
            #expect(model.lastStepKeptActivations == (budget > 0))
            grads.append(model.parameterNames.flatMap { model.gradient($0)?.values ?? [] })
        }
        #expect(!grads[0].isEmpty)
        #expect(grads[0] == grads[1])
    }

    @Test(arguments: models)
    func everyGradientMatchesAutograd(_ name: String) throws {
        let ref = try Reference("grads-\(name).safetensors")
        let model = try loadTiny(name)
        try Self.prepare(model, ref)
        let result = try model.lossAndGradients(try ref.batch())
        let expectedLoss = try ref.floats("loss")[0]
        #expect(abs(result.loss - Double(expectedLoss)) / Double(expectedLoss) < 1e-5, "loss \(result.loss) vs \(expectedLoss)")

        var checked = 0, worst = 0.0
        for key in ref.file.names where key.hasPrefix("grad.") {
            let expected = try ref.floats(key)
            let name = String(key.dropFirst(5))
            let got: Tensor
            if name.hasPrefix("lora.") {
                let base = String(name.dropFirst(5).dropLast(2))
                let lora = try #require(model.linear(named: base)?.lora)
                got = name.hasSuffix(".a") ? lora.gradA : lora.gradB
            } else if name.hasPrefix("delta.") {
                got = try #require(model.deltaGradient(String(name.dropFirst(6))))
            } else if name == "lm_head.weight" && model.isTied {
                continue
            } else {
                got = try #require(model.gradient(name), "no gradient for \(name)")
            }
            #expect(got.count == expected.count, "\(name)")
            let err = relativeError(got.data, expected)
            worst = max(worst, err)
            #expect(err <= 1e-4, "\(name): relative error \(err)")
            checked += 1
        }
        #expect(checked >= 20)
        print("\(name): \(checked) gradients, worst relative error \(worst)")
    }

    /// Row and column selections return exactly the rows/columns of the full gradient.
    @Test func selectionsAreSlicesOfTheFullGradient() throws {
        let ref = try Reference("grads-llama-tiny-f32.safetensors")
        let batch = try ref.batch()
        let full = try loadTiny("llama-tiny-f32")
        let name = "model.layers.1.mlp.up_proj.weight", down = "model.layers.0.mlp.down_proj.weight"
        try full.requestGradient(name)
        try full.requestGradient(down)
        try full.requestGradient("model.embed_tokens.weight")
        try full.lossAndGradients(batch)
        let sub = try loadTiny("llama-tiny-f32")
        let rows = [5, 0, 77], cols = [2, 150, 9, 33]
        try sub.requestGradient(name, selection: .rows(rows))
        try sub.requestGradient(down, selection: .columns(cols))
        try sub.requestGradient("model.embed_tokens.weight", selection: .rows([1, 3, 200]))
        try sub.lossAndGradients(batch)
        let g = try #require(full.gradient(name)), s = try #require(sub.gradient(name))
        for (j, r) in rows.enumerated() {
            for c in 0..<64 { #expect(abs(s[j * 64 + c] - g[r * 64 + c]) <= 1e-6 * max(1, abs(g[r * 64 + c]))) }
        }
        let gd = try #require(full.gradient(down)), sd = try #require(sub.gradient(down))
        for r in 0..<64 {
            for (j, c) in cols.enumerated() { #expect(abs(sd[r * cols.count + j] - gd[r * 160 + c]) <= 1e-6 * max(1, abs(gd[r * 160 + c]))) }
        }
        let ge = try #require(full.gradient("model.embed_tokens.weight")), se = try #require(sub.gradient("model.embed_tokens.weight"))
        for (j, r) in [1, 3, 200].enumerated() {
            for c in 0..<64 { #expect(abs(se[j * 64 + c] - ge[r * 64 + c]) <= 1e-6 * max(1, abs(ge[r * 64 + c]))) }
        }
    }

    /// Central finite differences of the loss on a few coordinates (f32 noise bounds the check).
    @Test func finiteDifferences() throws {
        let ref = try Reference("grads-qwen2-tiny-f32.safetensors")
        let batch = try ref.batch()
        let model = try loadTiny("qwen2-tiny-f32")
        let targets: [(String, Int)] = [("model.layers.0.self_attn.q_proj.weight", 123), ("model.layers.1.mlp.down_proj.weight", 4000),
                                        ("model.embed_tokens.weight", 17 * 64 + 5), ("model.layers.0.self_attn.k_proj.bias", 7),
                                        ("model.norm.weight", 11), ("model.layers.1.input_layernorm.weight", 40)]
        for (name, _) in targets { try model.requestGradient(name) }
        for (name, _) in targets {
            if let l = model.linear(named: name), !name.hasSuffix(".bias") { l.makeWritable() }
        }
        try model.lossAndGradients(batch)
        for (name, index) in targets {
            let analytic = Double(try #require(model.gradient(name))[index])
            let p = try #require(model.parameter(name))
            let h: Float = 1e-2
            let saved = p[index]
            p[index] = saved + h
            let plus = try model.loss(batch).loss
            p[index] = saved - h
            let minus = try model.loss(batch).loss
            p[index] = saved
            let numeric = (plus - minus) / (2 * Double(h))
            #expect(abs(numeric - analytic) <= 2e-2 * abs(analytic) + 2e-4, "\(name)[\(index)]: numeric \(numeric), analytic \(analytic)")
        }
    }
}
