import Foundation
import LanguageModel
import TensorCore
import Testing
import Tokenizers
@testable import Server

/// Batching must not change results: many concurrent greedy clients get exactly the tokens a
/// lone `graft generate` gives (the model is batch-invariant, DESIGN.md).
@Suite struct ConcurrencyTests {
    @Test func concurrentGreedyEqualsAlone() throws {
        let s = try TestServer { $0.maxBatch = 8; $0.prefillChunk = 7 }
        defer { #expect(s.stop()) }
        let model = try Model.load(directory: tinyModel, pool: WorkerPool(threads: 1))
        let prompts: [[Int]] = (0..<16).map { i in (0..<(3 + i * 2)).map { ($0 * 31 + i * 7 + 1) % 256 } }
        let maxTokens = 24
        let expected = try prompts.map { try generateAlone(model: model, prompt: $0, maxTokens: maxTokens) }
        let results = ResultBox(count: prompts.count)
        DispatchQueue.concurrentPerform(iterations: prompts.count) { i in
            let stream = i % 2 == 1
            let r = try? s.post("/v1/completions", ["prompt": prompts[i], "max_tokens": maxTokens, "temperature": 0,
                                                     "return_token_ids": true, "stream": stream])
            var ids: [Int] = []
            if let r, r.status == 200 {
                if stream {
                    for e in r.events.dropLast() {
                        let obj = try? JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any]
                        ids += ((obj?["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]) ?? []
                    }
                } else {
                    ids = ((r.json["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]) ?? []
                }
            }
            results.set(i, ids)
        }
        for i in prompts.indices {
            #expect(results.get(i) == expected[i], "prompt \(i)")
        }
    }

    /// The same on the real default model, by text, when it is provisioned.
    @Test(.enabled(if: defaultModelPresent, "default model not provisioned (run tools/provision)"))
    func defaultModelConcurrentGreedyEqualsGenerate() throws {
        let s = try TestServer(model: defaultModel) { $0.maxBatch = 8; $0.threads = nil }
        defer { #expect(s.stop()) }
        let prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "The three primary colors are",
                       "import numpy as np\n", "Water boils at", "My favourite food is", "1, 2, 3, 4,"]
        let tokenizer = try Tokenizer(directory: defaultModel)
        let model = s.server.model
        // Alone first (the server is idle: nothing else touches the model meanwhile).
        let eos = tokenizer.eosTokenID.map { [$0] } ?? []
        let expected = try prompts.map { p in
            tokenizer.decode(try generateAlone(model: model, prompt: tokenizer.encode(p, addSpecialTokens: true),
                                               maxTokens: 16, extraStops: eos), skipSpecialTokens: true)
        }
        let results = ResultBox(count: prompts.count)
        DispatchQueue.concurrentPerform(iterations: prompts.count) { i in
            let r = try? s.post("/v1/completions", ["prompt": prompts[i], "max_tokens": 16, "temperature": 0])
            let text = (r?.json["choices"] as? [[String: Any]])?.first?["text"] as? String
            results.setText(i, text ?? "<failed>")
        }
        for i in prompts.indices { #expect(results.text(i) == expected[i], "prompt \(i): \(prompts[i])") }
    }

    /// Beyond the batch and the queue: 429 with Retry-After, and the others still finish.
    @Test func fullQueueGets429() throws {
        let s = try TestServer { $0.maxBatch = 1; $0.maxQueue = 1; $0.stepDelay = 0.02 }
        defer { #expect(s.stop()) }
        let slow: [String: Any] = ["prompt": [1, 2, 3], "max_tokens": 100, "temperature": 0, "stream": true]
        let a = try s.client(), b = try s.client()
        let body = String(decoding: try JSONSerialization.data(withJSONObject: slow), as: UTF8.self)
        try a.send("POST", "/v1/completions", body: body)
        Thread.sleep(forTimeInterval: 0.2)
        try b.send("POST", "/v1/completions", body: body)
        Thread.sleep(forTimeInterval: 0.2)
        var refused: HTTPResponse?
        for _ in 0..<5 {
            let r = try s.post("/v1/completions", slow)
            if r.status == 429 { refused = r; break }
        }
        #expect(refused?.status == 429)
        #expect(refused?.headers["retry-after"] != nil)
        #expect(try a.readResponse().status == 200)
        #expect(try b.readResponse().status == 200)
        a.close()
        b.close()
    }

    /// A 1 MiB KV budget (the smallest) still admits a sequence of the tiny model's full context.
    @Test func smallKVBudgetStillServes() throws {
        let s = try TestServer { $0.kvCacheMB = 1 }
        defer { #expect(s.stop()) }
        // llama-tiny: 2 layers × kvDim 32 × 2 × 4 bytes = 512 B per position; 128 positions fit in 1 MiB.
        let ok = try s.post("/v1/completions", ["prompt": [1, 2, 3], "max_tokens": 100, "temperature": 0])
        #expect(ok.status == 200)
    }
}

/// A request whose KV cache can never fit the budget is refused with 400, not queued forever.
@Test(.enabled(if: defaultModelPresent, "default model not provisioned (run tools/provision)"))
func kvBudgetRefusesWhatCannotFit() throws {
    // SmolLM2-135M: 30 layers × 192 × 2 × 4 bytes = 45 KiB per position; 100 positions > 1 MiB.
    let s = try TestServer(model: defaultModel) { $0.kvCacheMB = 1 }
    defer { #expect(s.stop()) }
    let r = try s.post("/v1/completions", ["prompt": "Hello", "max_tokens": 100])
    #expect(r.status == 400)
    #expect(((r.json["error"] as? [String: Any])?["message"] as? String)?.contains("--kv-cache-mb") == true)
    #expect(try s.post("/v1/completions", ["prompt": "Hello", "max_tokens": 10, "temperature": 0]).status == 200)
}

/// A bf16 KV cache halves the bytes a position reserves: with the same 1 MiB budget, a request
/// of ~32 positions that an f32 cache cannot fit (SmolLM2-135M: 45 KiB per position, 22 fit) is
/// served, and a larger one is still refused.
@Test(.enabled(if: defaultModelPresent, "default model not provisioned (run tools/provision)"))
func bf16KVCacheFitsTwiceThePositions() throws {
    let f32 = try TestServer(model: defaultModel) { $0.kvCacheMB = 1 }
    #expect(try f32.post("/v1/completions", ["prompt": "Hello", "max_tokens": 30, "temperature": 0]).status == 400)
    #expect(f32.stop())
    let s = try TestServer(model: defaultModel) { $0.kvCacheMB = 1; $0.kvCacheType = .bf16 }
    defer { #expect(s.stop()) }
    let ok = try s.post("/v1/completions", ["prompt": "Hello", "max_tokens": 30, "temperature": 0])
    #expect(ok.status == 200)
    #expect(((ok.json["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? 0) > 0)
    let r = try s.post("/v1/completions", ["prompt": "Hello", "max_tokens": 60])
    #expect(r.status == 400)
    #expect(((r.json["error"] as? [String: Any])?["message"] as? String)?.contains("--kv-cache-mb") == true)
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [[Int]]
    private var texts: [String]
    init(count: Int) {
        ids = Array(repeating: [], count: count)
        texts = Array(repeating: "", count: count)
    }
    func set(_ i: Int, _ v: [Int]) { lock.lock(); ids[i] = v; lock.unlock() }
    func get(_ i: Int) -> [Int] { lock.lock(); defer { lock.unlock() }; return ids[i] }
    func setText(_ i: Int, _ v: String) { lock.lock(); texts[i] = v; lock.unlock() }
    func text(_ i: Int) -> String { lock.lock(); defer { lock.unlock() }; return texts[i] }
}
