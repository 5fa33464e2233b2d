import Foundation
import LanguageModel
import SafeTensors
import TensorCore
import Testing
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
