import Foundation
import LanguageModel
import TensorCore
import Testing

@Suite struct ConfigTests {
    func decode(_ json: String) throws -> ModelConfig {
        let c = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
        try c.validate()
        return c
    }

    let base = #""model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100"#

    /// The bench's compute bound counts exactly the multiply-adds of the matrices a decode step
    /// multiplies by: every layer's seven and the lm head (tied or not, GQA or not).
    @Test(arguments: ["llama-tiny-f32", "qwen2-tiny-bf16", "llama3-tiny-f16"])
    func decodeMatmulFLOPsCountEveryMatrix(fixture: String) throws {
        let model = try Model.load(directory: fixturesDirectory + "/models/" + fixture, pool: WorkerPool(threads: 1))
        let w = model.weights
        var macs = w.lmHead.rows * w.lmHead.cols
        for layer in w.layers {
            for module in LayerModule.allCases { macs += layer.matrix(module).rows * layer.matrix(module).cols }
        }
        #expect(model.config.decodeMatmulFLOPs(batch: 3) == Double(2 * 3 * macs))
    }

    @Test func legacyAndNewRoPEFormsAgree() throws {
        let legacy = try decode("{\(base), \"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}")
        let modern = try decode("{\(base), \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}")
        #expect(legacy.rope == modern.rope)
        #expect(legacy.rope.theta == 500000)
        #expect(legacy.kvHeads == 4, "num_key_value_heads defaults to the head count")
        #expect(legacy.headDim == 16)
    }

    @Test func defaultsAndEOSLists() throws {
        let c = try decode("{\(base), \"eos_token_id\": [2, 7], \"rope_scaling\": null}")
        #expect(c.eosTokenIds == [2, 7])
        #expect(c.rope.type == "default" && c.rope.theta == 10000)
        #expect(!c.attentionBias)
        let q = try decode(#"{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 100, "eos_token_id": 5}"#)
        #expect(q.attentionBias, "Qwen2 projections carry q/k/v biases")
        #expect(q.eosTokenIds == [5])
    }

    @Test(arguments: [
        (#"{"model_type": "gpt2", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100}"#, "not supported"),
        (#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 3, "num_hidden_layers": 2, "vocab_size": 100}"#, "not a multiple"),
        (#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 0, "vocab_size": 100}"#, "must be positive"),
        (#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}"#, "not supported"),
    ])
    func invalidConfigsAreRejected(json: String, message: String) {
        #expect {
            _ = try decode(json)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func missingOrMalformedModelFolder() throws {
        let dir = NSTemporaryDirectory() + "graft-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ModelError.self) { _ = try Model.load(directory: dir) }
        try "{\"model_type\": \"llama\"".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        do {
            _ = try Model.load(directory: dir)
            Issue.record("a truncated config.json loaded")
        } catch {
            #expect("\(error)".contains("config.json"))
        }
        // A valid config without weights names the missing file.
        try "{\(base)}".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        do {
            _ = try Model.load(directory: dir)
            Issue.record("a folder without weights loaded")
        } catch {
            #expect("\(error)".contains("model.safetensors"))
        }
    }

    @Test func weightsWithTheWrongShapeAreRejected() throws {
        let dir = NSTemporaryDirectory() + "graft-shape-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = fixturesDirectory + "/models/llama-tiny-f32"
        try FileManager.default.copyItem(atPath: src + "/model.safetensors", toPath: dir + "/model.safetensors")
        var config = try String(contentsOfFile: src + "/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"intermediate_size\": 160", with: "\"intermediate_size\": 128")
        try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        do {
            _ = try Model.load(directory: dir)
            Issue.record("mismatched shapes loaded")
        } catch {
            #expect("\(error)".contains("mlp") && "\(error)".contains("shape"))
        }
    }
}
