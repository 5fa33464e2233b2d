import Foundation
import SafeTensors
import TensorCore
import Testing
@testable import Training

@Suite struct LoRATests {
    static let tokens = [1, 17, 42, 99, 5, 33, 200, 12, 9]

    @Test func svdReconstructs() throws {
        var rng = SplitMix64(seed: 7)
        let m = 13, n = 7
        let a = (0..<(m * n)).map { _ in Float.random(in: -1..<1, using: &rng) }
        let svd = try SVD(a, rows: m, cols: n)
        #expect(svd.rank == 7)
        #expect(zip(svd.s, svd.s.dropFirst()).allSatisfy { $0 >= $1 })
        var worst: Float = 0
        for i in 0..<m {
            for j in 0..<n {
                var acc: Float = 0
                for k in 0..<svd.rank { acc += svd.u[i * svd.rank + k] * svd.s[k] * svd.vt[k * n + j] }
                worst = max(worst, abs(acc - a[i * n + j]))
            }
        }
        #expect(worst < 1e-5)
        // Wide matrices too.
        let w = try SVD(Array(a.prefix(5 * 9)), rows: 5, cols: 9)
        #expect(w.rank == 5 && w.u.count == 25 && w.vt.count == 45)
    }

    @Test func pcaFindsTheDominantDirection() throws {
        var rng = SplitMix64(seed: 3)
        let n = 200, dim = 3
        var samples: [Float] = []
        for _ in 0..<n {
            let t = Float.random(in: -3..<3, using: &rng), e = Float.random(in: -0.05..<0.05, using: &rng)
            samples += [1 + t * 0.6, 2 + t * 0.8, 5 + e]
        }
        let pca = try PCA(samples: samples, count: n, dimension: dim, components: 1)
        #expect(abs(abs(pca.components[0]) - 0.6) < 1e-2 && abs(abs(pca.components[1]) - 0.8) < 1e-2)
        #expect(abs(pca.mean[2] - 5) < 1e-2)
    }

    private func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max() ?? 1
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    /// PiSSA and a given (B₀, A₀) compensate the base: step 0 logits are the original model's.
    @Test(arguments: ["pissa", "given"])
    func compensatedStartsLeaveLogitsUnchanged(_ kind: String) throws {
        let base = try loadTiny("llama-tiny-bf16")
        let expected = try base.logits(Self.tokens)
        let model = try loadTiny("llama-tiny-bf16")
        let config = LoRAConfig(rank: 4, alpha: 8)
        let initialization: LoRAInitialization
        if kind == "pissa" {
            initialization = .pissa
        } else {
            var rng = SplitMix64(seed: 11)
            var pairs: [String: (b: Tensor, a: Tensor)] = [:]
            for l in model.loraTargets(config) {
                let b = Tensor(shape: [l.outFeatures, 4]), a = Tensor(shape: [4, l.inFeatures])
                for i in 0..<b.count { b[i] = Float.random(in: -0.3..<0.3, using: &rng) }
                for i in 0..<a.count { a[i] = Float.random(in: -0.3..<0.3, using: &rng) }
                pairs[l.name] = (b, a)
            }
            initialization = .given(pairs)
        }
        let state = try model.attachLoRA(config, initialization: initialization)
        #expect(state.isCompensated && state.names.count == 8)
        // The adapters are not trivial: they carry the top singular directions (PiSSA).
        let up = try #require(model.linear(named: "model.layers.0.mlp.up_proj.weight")?.lora)
        #expect(up.b.values.map(abs).max()! > 0.01)
        let got = try model.logits(Self.tokens)
        let diff = maxRelativeDifference(got, expected)
        #expect(diff < 1e-5, "\(kind): logits moved by \(diff)")
    }

    /// Train a compensated start a few steps, export: the original base + the exported
    /// low-rank delta (rank 2r, B′A′ − B₀A₀) gives the trained model's logits; the PEFT
    /// adapter holds the same tensors at r = 2·rank, alpha = 2·alpha.
    @Test func compensatedExportIsTheDeltaAgainstTheOriginalBase() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("graft-lora-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ref = try Reference("grads-llama-tiny-f32.safetensors")
        let batch = try ref.batch()
        let model = try loadTiny("llama-tiny-f32")
        let config = LoRAConfig(rank: 2, alpha: 4, targets: ["up_proj", "o_proj"])
        let state = try model.attachLoRA(config, initialization: .pissa)
        let opt = AdamW(model.loraParameters(), weightDecay: 0)
        for _ in 0..<3 {
            model.zeroGradients()
            try model.lossAndGradients(batch)
            opt.step(lr: 1e-2)
        }
        let trained = try model.logits(Self.tokens)
        try model.saveLoRADelta(state, to: dir + "/delta.safetensors")
        try model.savePEFTAdapter(state, directory: dir + "/peft", baseModel: "llama-tiny-f32")

        let (pairs, scale, rank) = try readLoRADelta(path: dir + "/delta.safetensors")
        #expect(rank == 4 && scale == 2 && pairs.count == 4)
        let fresh = try loadTiny("llama-tiny-f32")
        for (name, pair) in pairs {
            fresh.linear(named: name)!.lora = LoRAAdapter(a: pair.a, b: pair.b, scale: scale)
        }
        let viaDelta = try fresh.logits(Self.tokens)
        #expect(maxRelativeDifference(viaDelta, trained) < 1e-5)
        let original = try loadTiny("llama-tiny-f32").logits(Self.tokens)
        #expect(maxRelativeDifference(original, trained) > 1e-4, "training moved the logits")

        let peft = try SafeTensorsFile(path: dir + "/peft/adapter_model.safetensors")
        #expect(try peft.info("base_model.model.model.layers.1.mlp.up_proj.lora_A.weight").shape == [4, 64])
        #expect(try peft.info("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight").shape == [160, 4])
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/peft/adapter_config.json"))) as! [String: Any]
        #expect(cfg["r"] as? Int == 4 && cfg["lora_alpha"] as? Double == 8 && cfg["peft_type"] as? String == "LORA")
    }

    /// A random start changes nothing (B = 0) and A follows Kaiming-uniform's bound.
    @Test func randomStart() throws {
        let model = try loadTiny("qwen2-tiny-f32")
        let before = try model.logits(Self.tokens)
        _ = try model.attachLoRA(LoRAConfig(rank: 8, alpha: 16), initialization: .random(seed: 1))
        let after = try model.logits(Self.tokens)
        #expect(before == after)
        let a = try #require(model.linear(named: "model.layers.0.mlp.down_proj.weight")?.lora?.a)
        let bound = 1 / Float(160).squareRoot()
        #expect(a.values.allSatisfy { abs($0) <= bound } && a.values.map(abs).max()! > bound * 0.9)
    }
}
