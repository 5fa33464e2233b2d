import Foundation
import GraftPluginABI
import LanguageModel
import SafeTensors
import TensorCore
import Testing
import Tokenizers
import Training
@testable import Transfer

/// The 1.1 model services, called for real by the dlopen'ed `test-services` plugin (which
/// reports what it got in its delta's metadata) and checked against the host's own
/// computations and transformers' traces (Tests/Fixtures/traces, tools/gen_trace_fixtures.py).
@Suite struct ModelServicesTests {
    let host = PluginHost(directory: PluginHost.executableDirectory)
    static let fixtures = repositoryRoot + "/Tests/Fixtures"

    static func weights(_ name: String) throws -> ModelWeights {
        let dir = fixtures + "/models/" + name
        return try ModelWeights(config: try ModelConfig.load(directory: dir), storage: SafeTensorsModel(directory: dir))
    }

    static func tokenizer(_ name: String) throws -> Tokenizer { try Tokenizer(directory: fixtures + "/tokenizers/" + name) }

    /// Target `model` with the smollm2 fixture tokenizer; "second" = qwen2-tiny-f32 (qwen2.5 tokenizer).
    func services(pool: WorkerPool) throws -> PluginServices {
        var s = PluginServices()
        s.tokenizer = try Self.tokenizer("smollm2")
        let second = try Self.weights("qwen2-tiny-f32"), secondTokenizer = try Self.tokenizer("qwen2.5")
        s.openModel = { name in
            guard name == "second" else { throw TransferError.plugin(name: "test", "no model named '\(name)' is configured") }
            return PluginModelSource(weights: second, tokenizer: secondTokenizer)
        }
        s.pool = pool
        return s
    }

    static let messages = #"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, world"}, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "2+2?"}]"#
    static let badMessages = [#"{"role": "user"}"#, "[]", #"[{"content": "x"}]"#, #"[{"role": "user", "content": 3}]"#, "[{", #"[{"role": "user", "content": "x"}] trailing"#]
    static let tensors = ["model.norm.weight", "model.layers.0.input_layernorm.weight", "model.embed_tokens.weight",
                          "lm_head.weight", "model.layers.1.mlp.down_proj.weight"]

    func params(tokens: [Int], positions: [Int]?) throws -> String {
        var object: [String: Any] = ["source": "second", "tensors": Self.tensors, "text": "Hello world, it's 2026!",
                                     "messages": Self.messages, "bad_messages": Self.badMessages, "tokens": tokens,
                                     "svd": "model.layers.0.self_attn.v_proj.weight"]
        if let positions { object["positions"] = positions }
        return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    func floats(_ meta: [String: String], _ key: String) -> [Float] {
        ints(meta, key).map { Float(bitPattern: UInt32($0)) }
    }

    func ints(_ meta: [String: String], _ key: String) -> [Int] {
        guard let text = meta[key], let a = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Int] else {
            Issue.record("no integer array \(key)")
            return []
        }
        return a
    }

    /// A tensor of a safetensors file as floats (f32 or i32 widened).
    func reference(_ file: SafeTensorsFile, _ name: String) throws -> (values: [Float], shape: [Int]) {
        let info = try file.info(name), data = try file.data(name)
        let values: [Float] = info.dtype == .i32
            ? (0..<info.elementCount).map { Float(data.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            : (0..<info.elementCount).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        return (values, info.shape)
    }

    /// transformers' [L, T, w] (or [T, w]) trace at the chosen positions: [L, P, w].
    func select(_ full: [Float], layers: Int, tokens: Int, width: Int, positions: [Int]) -> [Float] {
        var out: [Float] = []
        for l in 0..<layers { for p in positions { out += full[((l * tokens + p) * width)..<((l * tokens + p + 1) * width)] } }
        return out
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    @Test(arguments: ["llama-tiny-f32", "qwen2-tiny-f32"])
    func tracedForwardMatchesTransformersAndTheEngine(model: String) throws {
        let pool = WorkerPool(threads: 2)
        let weights = try Self.weights(model)
        let trace = try SafeTensorsFile(path: Self.fixtures + "/traces/\(model).safetensors")
        let tokens = try reference(trace, "tokens").values.map { Int($0) }
        let positions = [0, 3, tokens.count - 1]
        let delta = try host.run("test-services", params: try params(tokens: tokens, positions: positions), weights: weights,
                                 services: try services(pool: pool))
        let meta = delta.metadata.extra
        #expect(delta.entries.isEmpty)
        let c = weights.config
        let (T, P, L, d, f, H) = (tokens.count, positions.count, c.layers, c.hiddenSize, c.intermediateSize, c.heads)

        // Logits: bit-identical to Model.forward's, with or without traces, and transformers' within 1e-4.
        let engine = Model(weights: weights, pool: pool)
        let rows = try engine.forward([ForwardInput(cache: engine.makeCache(maxTokens: T), tokens: tokens, logits: .all)])[0]
        let logits = floats(meta, "logits")
        #expect(logits == positions.flatMap { rows[$0] })
        #expect(floats(meta, "logits_only") == logits)
        #expect(floats(meta, "logits_last") == rows[T - 1])
        let hfLogits = try reference(trace, "logits").values
        #expect(maxDiff(logits, select(hfLogits, layers: 1, tokens: T, width: c.vocabSize, positions: positions)) < 1e-4)

        for (key, width) in [("residual_pre_attention", d), ("residual_pre_ffn", d), ("ffn_coefficients", f), ("attention_mix", c.qDim)] {
            let expected = select(try reference(trace, key).values, layers: L, tokens: T, width: width, positions: positions)
            let got = floats(meta, key)
            #expect(got.count == L * P * width, "\(key)")
            #expect(maxDiff(got, expected) < 1e-4, "\(key): max |Δ| = \(maxDiff(got, expected))")
        }
        let hfFinal = select(try reference(trace, "final_hidden").values, layers: 1, tokens: T, width: d, positions: positions)
        #expect(maxDiff(floats(meta, "final_hidden"), hfFinal) < 1e-4)
        // Attention weights [L, H, P, T] (transformers' [L, H, T, T] rows at the positions; 0 after them).
        let hfWeights = try reference(trace, "attention_weights").values
        var expectedWeights: [Float] = []
        for l in 0..<L {
            for h in 0..<H {
                for p in positions {
                    let start: Int = ((l * H + h) * T + p) * T
                    expectedWeights += hfWeights[start..<(start + T)]
                }
            }
        }
        let weightsGot = floats(meta, "attention_weights")
        #expect(maxDiff(weightsGot, expectedWeights) < 1e-5)
        #expect(weightsGot.count == L * H * P * T)
        for l in 0..<L { for h in 0..<H { for (i, p) in positions.enumerated() {
            let start: Int = ((l * H + h) * P + i) * T
            let row = weightsGot[start..<(start + T)]
            #expect(row.dropFirst(p + 1).allSatisfy { $0 == 0 })
            #expect(abs(row.reduce(0, +) - 1) < 1e-5)
        } } }

        // lm_head.weight is served for tied models too (the embedding).
        #expect(c.tieWordEmbeddings == (model == "qwen2-tiny-f32"))
        #expect((floats(meta, "tensor.lm_head.weight") == floats(meta, "tensor.model.embed_tokens.weight")) == c.tieWordEmbeddings)
        #expect(meta["tensor_shape.lm_head.weight"] == "[\(c.vocabSize), \(d)]")

        // Capacity, order and request-size errors write nothing.
        #expect(meta["capacity_status"] == "1")
        #expect(meta["capacity_error"]?.contains("logits_capacity is \(T * c.vocabSize - 1) floats, \(T * c.vocabSize) needed") == true, "\(meta["capacity_error"] ?? "")")
        #expect(meta["capacity_untouched"] == "true")
        #expect(meta["positions_status"] == "1")
        #expect(meta["positions_error"]?.contains("strictly ascending") == true)
        #expect(meta["positions_untouched"] == "true")
        #expect(meta["small_request_status"] == "1")
        #expect(meta["small_request_error"]?.contains("struct_size is 8") == true)
    }

    @Test func handlesTensorsTokenizerAndChatFormat() throws {
        let pool = WorkerPool(threads: 2)
        let weights = tinyWeights
        let delta = try host.run("test-services", params: try params(tokens: [1, 2, 3, 4], positions: nil), weights: weights,
                                 services: try services(pool: pool))
        let meta = delta.metadata.extra

        // Target and source handles: the same handle each time, the right fingerprints, a clear error for an unknown name.
        #expect(meta["target_fingerprint"] == weights.fingerprint)
        #expect(meta["target_config"] == "64")
        #expect(meta["target_again_same"] == "true")
        let second = try Self.weights("qwen2-tiny-f32")
        #expect(meta["source_fingerprint"] == second.fingerprint)
        #expect(meta["source_fingerprint"] != weights.fingerprint)
        #expect(meta["source_again_same"] == "true")
        #expect(meta["unknown_model"]?.contains("cannot open model 'no-such-model'") == true, "\(meta["unknown_model"] ?? "")")
        let engine = Model(weights: second, pool: pool)
        let sourceRows = try engine.forward([ForwardInput(cache: engine.makeCache(maxTokens: 4), tokens: [1, 2, 3, 4], logits: .all)])[0]
        #expect(floats(meta, "source_logits") == sourceRows.flatMap { $0 })

        // Tensors: 1-D as [n, 1], the embedding, the untied lm_head, a weight — values as stored.
        let storage = weights.storage
        for name in Self.tensors {
            let info = try storage.info(name), data = try storage.data(name)
            let shape = info.shape.count == 1 ? "[\(info.shape[0]), 1]" : "[\(info.shape[0]), \(info.shape[1])]"
            #expect(meta["tensor_shape." + name] == shape, "\(name)")
            let stored = (0..<info.elementCount).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            #expect(floats(meta, "tensor." + name) == stored, "\(name)")
        }
        // PluginKit's SVD in the plugin gives the host's singular values.
        let v = "model.layers.0.self_attn.v_proj.weight"
        let vInfo = try storage.info(v), vData = try storage.data(v)
        let hostSVD = try SVD((0..<vInfo.elementCount).map { vData.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) },
                                       rows: vInfo.shape[0], cols: vInfo.shape[1])
        #expect(maxDiff(floats(meta, "svd." + v), hostSVD.s) < 1e-5)
        #expect(meta["unknown_tensor"]?.contains("has no tensor 'model.layers.99.nope.weight'") == true)

        // Tokenizer and chat template: the host's own.
        let tokenizer = try Self.tokenizer("smollm2")
        let text = "Hello world, it's 2026!"
        #expect(ints(meta, "tokenize") == tokenizer.encode(text))
        #expect(ints(meta, "tokenize_special") == tokenizer.encode(text, addSpecialTokens: true))
        let chat = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hello, world"),
                    ChatMessage(role: "assistant", content: "Hi!"), ChatMessage(role: "user", content: "2+2?")]
        #expect(meta["chat"] == (try tokenizer.applyChatTemplate(messages: chat, addGenerationPrompt: true)))
        #expect(meta["chat_no_prompt"] == (try tokenizer.applyChatTemplate(messages: chat, addGenerationPrompt: false)))
        let expectedErrors = ["must be a JSON array", "messages is empty", "messages[0].role must be a string",
                              "messages[0].content must be a string", "not JSON", "not JSON"]
        for (i, expected) in expectedErrors.enumerated() {
            #expect(meta["chat_error.\(i)"]?.contains(expected) == true, "\(i): \(meta["chat_error.\(i)"] ?? "nil")")
        }

        // parallel_for covers [0, n) exactly once; count 0 calls nothing.
        #expect(ints(meta, "parallel_visits") == [Int](repeating: 1, count: 1000))
        #expect(meta["parallel_calls"] == meta["parallel_calls_after_empty"])
        #expect((Int(meta["parallel_calls"] ?? "") ?? 0) >= 1)

        // gemm against a naive product (integer-valued data: exact).
        func input(_ count: Int, seed: Int) -> [Float] { (0..<count).map { Float((($0 &* 5 &+ seed &* 13) % 7) - 3) } }
        for (m, n, k) in [(5, 7, 3), (64, 64, 64)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = input(m * k, seed: 1), b = input(k * n, seed: 2)
                var expected = input(m * n, seed: 3).map { 0.5 * $0 }
                for i in 0..<m { for j in 0..<n {
                    var s: Float = 0
                    for p in 0..<k { s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]) }
                    expected[i * n + j] += 2 * s
                } }
                #expect(floats(meta, "gemm.\(m).\(n).\(k).\(ta ? 1 : 0)\(tb ? 1 : 0)") == expected, "\(m)×\(n)×\(k) \(ta) \(tb)")
            }
        }
        #expect(Set(["00", "01", "10", "11"].map { meta["gemm.5.7.3." + $0] ?? "" }).count == 4)   // the data tells transposes apart
        #expect(meta["gemm_bad_lda"]?.contains("lda 1 < 2") == true, "\(meta["gemm_bad_lda"] ?? "")")
    }

    @Test func aOnePointZeroHostGivesClearErrors() throws {
        let size10 = UInt32(MemoryLayout<graft_host>.offset(of: \graft_host.last_error)!)
        let delta = try host.run("test-services", params: #"{"mode": "old-host"}"#, weights: tinyWeights,
                                 services: PluginServices(), hostTableSize: size10)
        for key in ["old_host_target", "old_host_parallel_for", "old_host_gemm"] {
            #expect(delta.metadata.extra[key]?.contains("speaks plugin ABI 1.1 and has no") == true, "\(key): \(delta.metadata.extra[key] ?? "nil")")
            #expect(delta.metadata.extra[key]?.contains("needs a 1.1 host") == true)
        }
    }

    @Test func withoutSourcesOpenModelSaysHowToConfigureOne() throws {
        do {
            _ = try host.run("test-services", params: #"{"source": "x"}"#, weights: tinyWeights)
            Issue.record("expected a failure")
        } catch {
            #expect("\(error)".contains("configure one with --source NAME=DIR"), "\(error)")
        }
    }
}

/// `--source NAME=DIR` parsing and lazy opening.
@Suite struct ModelSourcesTests {
    static let second = repositoryRoot + "/Tests/Fixtures/models/qwen2-tiny-f32"

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test func parsesAndRefuses() throws {
        let sources = try ModelSources(arguments: ["second=" + Self.second, "qwen2.5-coder_1=" + Self.second])
        #expect(sources.entries.map(\.name) == ["second", "qwen2.5-coder_1"])
        #expect(sources.arguments == ["--source", "second=" + Self.second, "--source", "qwen2.5-coder_1=" + Self.second])
        #expect(message { _ = try ModelSources(arguments: ["second"]) }.contains("is not NAME=DIR"))
        #expect(message { _ = try ModelSources(arguments: ["=x"]) }.contains("is not NAME=DIR"))
        #expect(message { _ = try ModelSources(arguments: ["a/b=" + Self.second]) }.contains("is not a source name"))
        #expect(message { _ = try ModelSources(arguments: ["a=" + Self.second, "a=" + Self.second]) }.contains("given twice"))
        #expect(message { _ = try ModelSources(arguments: ["a=/nonexistent"]) }.contains("no such folder"))
        #expect(try ModelSources(arguments: []).openModel == nil)
    }

    @Test func opensOnceOnFirstUse() throws {
        let sources = try ModelSources(arguments: ["second=" + Self.second])
        let a = try sources.open("second"), b = try sources.open("second")
        #expect(a.weights === b.weights)
        #expect(a.tokenizer == nil)   // the fixture folder has no tokenizer.json
        #expect(message { _ = try sources.open("third") }.contains("no model is configured as 'third' (configured: second"))
        // Through a plugin run.
        var services = PluginServices()
        services.openModel = sources.openModel
        let delta = try PluginHost(directory: PluginHost.executableDirectory)
            .run("test-services", params: #"{"source": "second"}"#, weights: tinyWeights, services: services)
        #expect(delta.metadata.extra["source_fingerprint"] == a.weights.fingerprint)
    }
}

/// The services on the provisioned default model (bf16, its real tokenizer and chat template),
/// opened through `--source` as a plugin would. Skipped when the model is not provisioned.
@Suite struct DefaultModelServicesTests {
    static let directory = repositoryRoot + "/models/smollm2-135m-instruct"

    @Test(.enabled(if: FileManager.default.fileExists(atPath: directory + "/model.safetensors"),
                   "default model not provisioned (run tools/provision)"))
    func realTokenizerTemplateAndForward() throws {
        let sources = try ModelSources(arguments: ["default=" + Self.directory])
        let source = try sources.open("default")
        let tokenizer = try #require(source.tokenizer)
        var services = PluginServices()
        services.tokenizer = tokenizer
        services.openModel = sources.openModel
        let messages = #"[{"role": "user", "content": "What is 2+2?"}]"#
        let tokens = tokenizer.encode("The capital of France is")
        let params = try JSONSerialization.data(withJSONObject: [
            "source": "default", "text": "Hello world", "messages": messages, "tokens": tokens,
            "positions": [0, tokens.count - 1], "tensors": ["model.norm.weight"],
        ] as [String: Any])
        let delta = try PluginHost(directory: PluginHost.executableDirectory)
            .run("test-services", params: String(decoding: params, as: UTF8.self), weights: source.weights, services: services)
        let meta = delta.metadata.extra
        func floats(_ key: String) -> [Float] {
            ((try? JSONSerialization.jsonObject(with: Data((meta[key] ?? "").utf8))) as? [Int] ?? []).map { Float(bitPattern: UInt32($0)) }
        }
        #expect(meta["source_fingerprint"] == source.weights.fingerprint)
        #expect(meta["chat"] == (try tokenizer.applyChatTemplate(messages: [ChatMessage(role: "user", content: "What is 2+2?")])))
        #expect(meta["tokenize"] == "[" + tokenizer.encode("Hello world").map(String.init).joined(separator: ",") + "]")
        #expect(meta["tensor_shape.model.norm.weight"] == "[\(source.weights.config.hiddenSize), 1]")
        let engine = Model(weights: source.weights, pool: WorkerPool(threads: 2))
        let rows = try engine.forward([ForwardInput(cache: engine.makeCache(maxTokens: tokens.count), tokens: tokens, logits: .all)])[0]
        #expect(floats("logits") == rows[0] + rows[tokens.count - 1])
        #expect(floats("residual_pre_attention").count == source.weights.config.layers * 2 * source.weights.config.hiddenSize)
    }
}
