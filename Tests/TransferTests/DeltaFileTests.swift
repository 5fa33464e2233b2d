import Foundation
import LanguageModel
import SafeTensors
import TensorCore
import Testing
import Training
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

    /// The content hash follows the values, never the metadata or the file that carried them.
    @Test func contentHashFollowsTheValuesOnly() throws {
        let dir = scratchDirectory("hash")
        let delta = sampleDelta(fingerprint: builder.fingerprint)
        try DeltaFile.write(delta, shapes: builder.shapes, to: dir + "/d.safetensors")
        let back = try DeltaFile.read(path: dir + "/d.safetensors", targets: builder.shapes)
        #expect(back.contentHash == delta.contentHash && delta.contentHash.hasPrefix("sha256:"))
        var relabelled = delta
        relabelled.metadata = DeltaMetadata(modelFingerprint: builder.fingerprint, strategy: "other", parameters: "{}", extra: ["note": "x"])
        #expect(relabelled.contentHash == delta.contentHash)
        var nudged = delta
        let v = LayerModule.v.tensorName(layer: 0)
        var values = seededValues(32 * 64, seed: 5)
        values[7] = values[7].nextUp
        nudged.entries[v] = [.dense(values: values)]
        #expect(nudged.contentHash != delta.contentHash)
        var rescaled = delta
        let q = LayerModule.q.tensorName(layer: 1)
        if case .lowRank(let a, let b, let r, _) = delta.entries[q]![0] { rescaled.entries[q] = [.lowRank(a: a, b: b, rank: r, scale: 0.25)] }
        #expect(rescaled.contentHash != delta.contentHash)
        // Provenance and the variant's content fingerprint carry it; the mode enters the latter.
        let b = VariantBuilder(weights: tinyWeights, deltaDirectory: dir)
        let (_, unmerged) = try b.build(name: "h", deltaPaths: ["d.safetensors"])
        let (_, merged) = try b.build(name: "h", deltaPaths: ["d.safetensors"], mode: .merged)
        #expect(unmerged.sources[0].contentHash == delta.contentHash)
        #expect(unmerged.contentFingerprint != merged.contentFingerprint)
        #expect(unmerged.contentFingerprint == (try b.build(name: "other", deltaPaths: ["d.safetensors"]).1.contentFingerprint))
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
        // Merged copies of up [160×64], down, q, v in f32 need 106,496 bytes: refused under a smaller limit.
        b.mergedMemoryLimitBytes = 100_000
        #expect(throws: TransferError.self) { try b.build(name: "m", deltaPaths: ["d.safetensors"], mode: .merged) }
        #expect(try b.build(name: "u", deltaPaths: ["d.safetensors"]).0.mode == .unmerged)
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

    /// The fingerprint is Training's (deltas from `graft finetune` load here).
    @Test func fingerprintIsTrainings() {
        #expect(tinyWeights.fingerprint.hasPrefix("fnv1a64:"))
        #expect(TrainingModel(weights: tinyWeights, pool: WorkerPool(threads: 1)).fingerprint == tinyWeights.fingerprint)
        #expect(tinyWeights.fingerprint == VariantBuilder(weights: tinyWeights, deltaDirectory: nil).fingerprint)
    }
}

/// PEFT adapters round-trip, and `graft finetune`'s PEFT writer's layout loads with its scale.
@Suite struct PEFTAdapterTests {
    let builder = VariantBuilder(weights: tinyWeights, deltaDirectory: nil)

    @Test func exportsAndImportsLowRankDeltas() throws {
        let dir = scratchDirectory("peft")
        let q = LayerModule.q.tensorName(layer: 0), down = LayerModule.down.tensorName(layer: 1)   // [64, 64], [64, 160]
        let delta = Delta(entries: [
            q: [.lowRank(a: seededValues(2 * 64, seed: 1), b: seededValues(64 * 2, seed: 2), rank: 2, scale: 4)],
            down: [.lowRank(a: seededValues(2 * 160, seed: 3), b: seededValues(64 * 2, seed: 4), rank: 2, scale: 4)],
        ], metadata: DeltaMetadata(modelFingerprint: builder.fingerprint, strategy: "test"))
        try PEFTAdapter.write(delta, directory: dir + "/adapter")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter/adapter_config.json"))) as? [String: Any]
        #expect(config?["r"] as? Int == 2)
        #expect(config?["lora_alpha"] as? Double == 8)
        #expect(config?["target_modules"] as? [String] == ["down_proj", "q_proj"])
        let back = try PEFTAdapter.read(directory: dir + "/adapter", targets: builder.shapes, fingerprint: builder.fingerprint)
        #expect(back.entries == delta.entries)
        // Through the variant builder: a folder in the delta directory is a PEFT adapter.
        let b = VariantBuilder(weights: tinyWeights, deltaDirectory: dir)
        #expect(try b.build(name: "p", deltaPaths: ["adapter"]).1.sources[0].metadata["strategy"] == "peft-lora")
        // rsLoRA scales by alpha/√r.
        var rs = config!
        rs["use_rslora"] = true
        try JSONSerialization.data(withJSONObject: rs).write(to: URL(fileURLWithPath: dir + "/adapter/adapter_config.json"))
        let rsDelta = try PEFTAdapter.read(directory: dir + "/adapter", targets: builder.shapes, fingerprint: builder.fingerprint)
        guard case .lowRank(_, _, _, let s)? = rsDelta.entries[q]?.first else { Issue.record("no entry"); return }
        #expect(abs(s - 8 / 2.0.squareRoot().float) < 1e-6)
        #expect(throws: TransferError.self) {
            try PEFTAdapter.write(Delta(entries: [q: [.dense(values: [Float](repeating: 0, count: 64 * 64))]],
                                        metadata: delta.metadata), directory: dir + "/dense")
        }
    }
}

extension Double { var float: Float { Float(self) } }
