import Foundation
import LanguageModel
import SafeTensors
import TensorCore
import Testing
import Training
@testable import Transfer

/// `graft variant apply`: the written model's touched matrices are W + Δ, the rest unchanged,
/// and its logits equal the unmerged variant's on the base.
@Suite struct VariantApplyTests {
    @Test func appliedModelEqualsTheVariant() throws {
        let dir = scratchDirectory("apply")
        let builder = VariantBuilder(weights: tinyWeights, deltaDirectory: nil)
        let delta = sampleDelta(fingerprint: builder.fingerprint)
        try DeltaFile.write(delta, shapes: builder.shapes, to: dir + "/d.safetensors")
        try VariantApply.write(modelDirectory: tinyModel, deltaPaths: [dir + "/d.safetensors"], output: dir + "/out")
        let applied = try SafeTensorsModel(directory: dir + "/out")
        #expect(applied.metadata["graft_base_fingerprint"] == builder.fingerprint)
        for name in tinyWeights.storage.names {
            let before = try tinyWeights.storage.data(name), after = try applied.data(name)
            let info = try tinyWeights.storage.info(name)
            let a = Array(before.bindMemory(to: Float.self)), b = Array(after.bindMemory(to: Float.self))
            if let entries = delta.entries[name] {
                let d = entries[0].densified(rows: info.shape[0], cols: info.shape[1])
                #expect(zip(zip(a, d), b).allSatisfy { $0.0 + $0.1 == $1 }, "\(name)")
            } else {
                #expect(a == b, "\(name)")
            }
        }
        // Logits: merged folder on its own vs the unmerged variant over the base.
        let base = try Model.load(directory: tinyModel, pool: WorkerPool(threads: 1))
        let merged = try Model.load(directory: dir + "/out", pool: WorkerPool(threads: 1))
        let (variant, _) = try VariantBuilder(weights: base.weights, deltaDirectory: nil).build(name: "v", deltas: [("d", delta)])
        let tokens = [1, 5, 9, 200, 17]
        let x = try base.forward([ForwardInput(cache: base.makeCache(), tokens: tokens, logits: .all, variant: variant)])[0]
        let y = try merged.forward([ForwardInput(cache: merged.makeCache(), tokens: tokens, logits: .all)])[0]
        let diff = zip(x.joined(), y.joined()).map { abs($0 - $1) }.max() ?? 0
        #expect(diff < 1e-4, "max |Δlogit| \(diff)")
        #expect(throws: TransferError.self) { try VariantApply.write(modelDirectory: tinyModel, deltaPaths: [dir + "/d.safetensors"], output: tinyModel) }
    }
}

/// `graft finetune --full` writes dense deltas on every matrix (the embedding and lm head
/// included) and on the 1-D tensors (norm weights, Qwen2's q/k/v biases): they load as a
/// variant, and its logits equal those of the folder `graft variant apply` writes.
@Suite struct FullFineTuneVariantTests {
    @Test func fullFineTuneDeltaLoadsAsAVariant() throws {
        let dir = scratchDirectory("full-ft")
        let modelDir = repositoryRoot + "/Tests/Fixtures/models/qwen2-tiny-f32"
        let trained = try TrainingModel.load(directory: modelDir, pool: WorkerPool(threads: 2))
        var options = FinetuneOptions()
        options.loraRank = nil
        options.batchSize = 2
        options.microBatchSize = 2
        options.learningRate = 1e-2
        let data = [TrainingSequence(tokens: [1, 5, 9, 200, 17, 3]), TrainingSequence(tokens: [4, 8, 15, 16, 23, 42, 99])]
        let ft = try Finetuner(model: trained, data: data, options: options)
        try ft.run()
        try ft.saveDelta(to: dir + "/full.safetensors")
        let names = Set(try SafeTensorsFile(path: dir + "/full.safetensors").names)
        for name in ["model.layers.0.input_layernorm.weight.dense", "model.layers.1.post_attention_layernorm.weight.dense",
                     "model.norm.weight.dense", "model.layers.0.self_attn.q_proj.bias.dense", "model.embed_tokens.weight.dense",
                     "model.layers.1.mlp.down_proj.weight.dense"] {   // (this model ties its lm head to the embedding)
            #expect(names.contains(name), "\(name)")
        }

        let base = try Model.load(directory: modelDir, pool: WorkerPool(threads: 1))
        let (variant, provenance) = try VariantBuilder(weights: base.weights, deltaDirectory: dir)
            .build(name: "full", deltaPaths: ["full.safetensors"], valueType: .f32)
        #expect(variant.targets.count == names.count)
        #expect(provenance.valueType == "f32")
        try VariantApply.write(modelDirectory: modelDir, deltaPaths: [dir + "/full.safetensors"], output: dir + "/out")
        let merged = try Model.load(directory: dir + "/out", pool: WorkerPool(threads: 1))
        let tokens = [1, 5, 9, 200, 17, 42]
        let x = try base.forward([ForwardInput(cache: base.makeCache(), tokens: tokens, logits: .all, variant: variant)])[0]
        let y = try merged.forward([ForwardInput(cache: merged.makeCache(), tokens: tokens, logits: .all)])[0]
        let z = try base.forward([ForwardInput(cache: base.makeCache(), tokens: tokens, logits: .all)])[0]
        let diff = zip(x.joined(), y.joined()).map { abs($0 - $1) }.max() ?? 0
        let moved = zip(x.joined(), z.joined()).map { abs($0 - $1) }.max() ?? 0
        #expect(diff < 1e-4, "variant vs applied folder: max |Δlogit| \(diff)")
        #expect(moved > 1e-3, "the fine-tune changed the logits by \(moved)")
    }
}
