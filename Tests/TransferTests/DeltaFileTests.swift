import Foundation
import LanguageModel
import SafeTensors
import TensorCore
import Testing
@testable import Transfer

@Suite struct DeltaFileTests {
    let builder = VariantBuilder(weights: tinyWeights, deltaDirectory: nil)

    @Test func roundTripsEveryKind() throws {
        let dir = scratchDirectory("roundtrip")
        let delta = sampleDelta(fingerprint: builder.fingerprint)
        try DeltaFile.write(delta, shapes: builder.shapes, to: dir + "/d.safetensors")
        let back = try DeltaFile.read(path: dir + "/d.safetensors", targets: builder.shapes)
        #expect(back.entries == delta.entries)
        #expect(back.metadata.modelFingerprint == builder.fingerprint)
        #expect(back.metadata.strategy == "test")
        #expect(back.metadata.parameters == "{\"seed\":1}")
        let file = try SafeTensorsFile(path: dir + "/d.safetensors")
        #expect(file.metadata["format"] == "graft-delta")
        #expect(file.metadata["format_version"] == "1")
        #expect(file.metadata["lora_scale"] == "0.5")
        #expect(try file.info("model.layers.0.mlp.up_proj.weight.rows").dtype == .i32)
        #expect(try file.info("model.layers.0.mlp.up_proj.weight.row_values").shape == [3, 64])
        #expect(try file.info("model.layers.1.mlp.down_proj.weight.col_values").shape == [64, 2])
        #expect(try file.info("model.layers.1.self_attn.q_proj.weight.lora_b").shape == [64, 2])
    }

    @Test func buildsAVariantWhoseDeltasAreTheFile() throws {
        let dir = scratchDirectory("build")
        try DeltaFile.write(sampleDelta(fingerprint: builder.fingerprint), shapes: builder.shapes, to: dir + "/d.safetensors")
        let b = VariantBuilder(weights: tinyWeights, deltaDirectory: dir)
        let (variant, provenance) = try b.build(name: "v1", deltaPaths: ["d.safetensors"])
        #expect(variant.name == "v1")
        #expect(variant.deltas.count == 4)
        #expect(provenance.sources.map(\.origin) == ["d.safetensors"])
        #expect(provenance.sources[0].metadata["strategy"] == "test")
        #expect(provenance.residentBytes == sampleDelta(fingerprint: "").byteCount)
        let merged = try b.build(name: "m", deltaPaths: ["d.safetensors"], mode: .merged).0
        #expect(merged.mode == .merged)
    }

    /// `graft finetune` writes low-rank deltas with its own writer: they load here.
    @Test func readsTheTrainingWritersLayout() throws {
        let dir = scratchDirectory("training")
        let target = LayerModule.k.tensorName(layer: 1)   // [32, 64]
        var writer = SafeTensorsWriter(metadata: [
            "format": "graft-delta", "format_version": "1", "model_fingerprint": builder.fingerprint,
            "strategy": "finetune-lora", "lora_scale": "2.0", "lora_alpha": "8.0", "lora_rank": "4",
            "lora_init": "gaussian", "lora_compensated": "false", "parameters": "{\"epochs\":\"1\"}",
        ])
        try writer.add(target + ".lora_a", dtype: .f32, shape: [4, 64], values: seededValues(256, seed: 9))
        try writer.add(target + ".lora_b", dtype: .f32, shape: [32, 4], values: seededValues(128, seed: 10))
        try writer.write(to: dir + "/lora.safetensors")
        let b = VariantBuilder(weights: tinyWeights, deltaDirectory: dir)
        let (variant, provenance) = try b.build(name: "ft", deltaPaths: ["lora.safetensors"])
        guard case .lowRank(_, _, let r, let s)? = variant.deltas[target]?.first else {
            Issue.record("no low-rank entry")
            return
        }
        #expect(r == 4 && s == 2)
        #expect(provenance.sources[0].metadata["lora_init"] == "gaussian")
    }

    /// The fingerprint is Training's: a fixed value for the committed fixture pins the algorithm.
    @Test func fingerprintIsStable() {
        #expect(tinyWeights.fingerprint.hasPrefix("fnv1a64:"))
        #expect(tinyWeights.fingerprint == VariantBuilder(weights: tinyWeights, deltaDirectory: nil).fingerprint)
    }
}
