import Foundation
import LanguageModel
import TensorCore
import Testing
@testable import Server

/// The OpenAI-shaped routes over real loopback sockets, on the tiny fixture model.
@Suite struct APITests {
    @Test func healthModelsAndMetrics() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let health = try s.request("GET", "/health")
        #expect(health.status == 200)
        #expect(health.json["status"] as? String == "ok")
        let models = try s.request("GET", "/v1/models")
        let data = models.json["data"] as? [[String: Any]]
        #expect(data?.first?["id"] as? String == "base")
        let alias = URL(fileURLWithPath: tinyTextModel).lastPathComponent
        #expect(try s.request("GET", "/v1/models/base").status == 200)
        #expect(try s.request("GET", "/v1/models/\(alias)").status == 200)
        #expect(try s.request("GET", "/v1/models/nope").status == 404)
        let byPath = try s.post("/v1/completions", ["prompt": [1, 2], "max_tokens": 1, "model": "some/dir/\(alias)"])
        #expect(byPath.status == 200, "a path ending in the folder's name is an alias")
        #expect(byPath.json["model"] as? String == "base")
        _ = try s.post("/v1/completions", ["prompt": [1, 2, 3], "max_tokens": 3, "temperature": 0])
        let metrics = try s.request("GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        for name in ["graft_http_requests_total{route=\"/v1/completions\",status=\"200\"} 2", "graft_prompt_tokens_total 5",
                     "graft_generation_tokens_total", "graft_time_to_first_token_seconds_bucket",
                     "graft_time_per_output_token_seconds_bucket", "graft_batch_size_sequences_bucket",
                     "graft_queue_depth_sequences", "graft_kv_cache_used_bytes", "graft_kv_cache_budget_bytes"] {
            #expect(metrics.text.contains(name), "metrics lack \(name)")
        }
    }

    @Test func errorsAreOpenAIShaped() throws {
        let s = try TestServer { $0.maxTokensLimit = 50; $0.maxPromptTokens = 20 }
        defer { #expect(s.stop()) }
        func check(_ r: HTTPResponse, _ status: Int, _ note: Comment) {
            #expect(r.status == status, note)
            let error = r.json["error"] as? [String: Any]
            #expect(error?["message"] is String, note)
            #expect(error?["type"] is String, note)
        }
        check(try s.request("GET", "/nowhere"), 404, "unknown route")
        check(try s.request("GET", "/v1/completions"), 405, "wrong method")
        check(try s.request("POST", "/v1/completions", body: "{\"prompt\": "), 400, "truncated JSON")
        check(try s.request("POST", "/v1/completions", body: "[1, 2]"), 400, "not an object")
        check(try s.post("/v1/completions", [:]), 400, "no prompt")
        check(try s.post("/v1/completions", ["prompt": "hi", "model": "gpt-4"]), 404, "unknown model")
        check(try s.post("/v1/completions", ["prompt": "hi", "max_tokens": 51]), 400, "max_tokens over the cap")
        check(try s.post("/v1/completions", ["prompt": "hi", "max_tokens": -1]), 400, "negative max_tokens")
        check(try s.post("/v1/completions", ["prompt": "hi", "temperature": "hot"]), 400, "wrong type")
        check(try s.post("/v1/completions", ["prompt": "hi", "n": 0]), 400, "n = 0")
        check(try s.post("/v1/completions", ["prompt": [1, 999]]), 400, "token id outside the vocabulary")
        check(try s.post("/v1/completions", ["prompt": Array(repeating: 5, count: 21)]), 400, "prompt over the cap")
        check(try s.post("/v1/completions", ["prompt": String(repeating: "x", count: 700)]), 400, "text far over the prompt cap")
        check(try s.post("/v1/completions", ["prompt": "hi", "stop": [String(repeating: "s", count: 300)]]), 400, "long stop string")
        check(try s.post("/v1/chat/completions", ["messages": []]), 400, "no messages")
        check(try s.post("/v1/chat/completions", ["messages": [["content": "x"]]]), 400, "message without role")
        let tokenOnly = try TestServer(model: tinyModel)
        defer { #expect(tokenOnly.stop()) }
        check(try tokenOnly.post("/v1/completions", ["prompt": "text"]), 400, "text prompt without a tokenizer")
        #expect(try tokenOnly.post("/v1/completions", ["prompt": [1, 2], "max_tokens": 2]).status == 200)
    }

    @Test func completionMatchesGenerate() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let model = try Model.load(directory: tinyModel, pool: WorkerPool(threads: 1))
        let expected = try generateAlone(model: model, prompt: [5, 6, 7, 8], maxTokens: 10)
        let r = try s.post("/v1/completions", ["prompt": [5, 6, 7, 8], "max_tokens": 10, "temperature": 0, "return_token_ids": true])
        #expect(r.status == 200)
        let choice = (r.json["choices"] as? [[String: Any]])?.first
        #expect(choice?["token_ids"] as? [Int] == expected)
        let usage = r.json["usage"] as? [String: Int]
        #expect(usage?["prompt_tokens"] == 4)
        #expect(usage?["completion_tokens"] == expected.count)
        #expect(r.json["object"] as? String == "text_completion")
    }

    @Test func streamingEqualsNonStreaming() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let body: [String: Any] = ["prompt": "hello", "max_tokens": 12, "temperature": 0]
        let whole = try s.post("/v1/completions", body)
        let text = ((whole.json["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "?"
        var streamBody = body
        streamBody["stream"] = true
        let stream = try s.post("/v1/completions", streamBody)
        #expect(stream.status == 200)
        #expect(stream.headers["content-type"] == "text/event-stream")
        let events = stream.events
        #expect(events.last == "[DONE]")
        var streamed = ""
        var finish: String?
        for e in events.dropLast() {
            let obj = try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any]
            let choice = (obj?["choices"] as? [[String: Any]])?.first
            streamed += choice?["text"] as? String ?? ""
            if let f = choice?["finish_reason"] as? String { finish = f }
        }
        #expect(streamed == text)
        #expect(finish == "length")

        // Chat: the role first, content deltas, usage when asked.
        let chat = try s.post("/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]], "max_tokens": 5,
                                                        "temperature": 0, "stream": true, "stream_options": ["include_usage": true]])
        let chunks = chat.events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(chat.events.last == "[DONE]")
        let first = (chunks.first?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any]
        #expect(first?["role"] as? String == "assistant")
        #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        let usage = chunks.last?["usage"] as? [String: Int]
        #expect(usage?["completion_tokens"] != nil)
    }

    @Test func chatLogprobsAndN() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let r = try s.post("/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]], "max_tokens": 4,
                                                     "temperature": 0.7, "seed": 11, "n": 3, "logprobs": true, "top_logprobs": 2])
        #expect(r.status == 200)
        let choices = r.json["choices"] as? [[String: Any]] ?? []
        #expect(choices.count == 3)
        #expect(choices.map { $0["index"] as? Int } == [0, 1, 2])
        let content = (choices.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]] ?? []
        #expect(!content.isEmpty)
        for entry in content {
            let top = entry["top_logprobs"] as? [[String: Any]] ?? []
            #expect(top.count == 2)
            let lp = entry["logprob"] as? Double ?? 1
            #expect(lp <= 0 && lp >= (top.last?["logprob"] as? Double ?? 0) - 1e-6 || lp <= (top.first?["logprob"] as? Double ?? 0))
        }
        // The same seed gives the same choices again.
        let again = try s.post("/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]], "max_tokens": 4,
                                                         "temperature": 0.7, "seed": 11, "n": 3])
        let texts = { (r: HTTPResponse) in (r.json["choices"] as? [[String: Any]] ?? []).map { ($0["message"] as? [String: Any])?["content"] as? String } }
        #expect(texts(r) == texts(again))
    }

    /// lm-evaluation-harness's local-completions: echo + logprobs scores every prompt token.
    @Test func echoScoresThePrompt() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let prompt = [3, 9, 27, 81, 243, 17, 51, 153, 203, 97]
        let model = try Model.load(directory: tinyModel, pool: WorkerPool(threads: 1))
        let rows = try model.forward([ForwardInput(cache: model.makeCache(), tokens: prompt, logits: .all)])[0]
        let expected = (1..<prompt.count).map { Double(logSoftmax(rows[$0 - 1])[prompt[$0]]) }
        for maxTokens in [0, 1] {
            let r = try s.post("/v1/completions", ["prompt": [prompt], "max_tokens": maxTokens, "echo": true, "logprobs": 1, "temperature": 0])
            #expect(r.status == 200)
            let lp = (r.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any]
            let tokenLogprobs = lp?["token_logprobs"] as? [Any] ?? []
            #expect(tokenLogprobs.count == prompt.count + maxTokens)
            #expect(tokenLogprobs.first is NSNull)
            let got = tokenLogprobs.dropFirst().prefix(prompt.count - 1).compactMap { $0 as? Double }
            #expect(got.count == expected.count)
            for (a, b) in zip(got, expected) { #expect(abs(a - b) < 1e-5) }
            let top = lp?["top_logprobs"] as? [Any] ?? []
            #expect(top.count == tokenLogprobs.count)
            #expect((lp?["tokens"] as? [String])?.count == tokenLogprobs.count)
        }
    }

    /// A one-token generation's top log-probs equal, bit for bit, the echo log-prob of that token
    /// appended to the prompt (the same logits row, the same log-softmax): `graft eval` scores
    /// MMLU's candidates from the former and echoes only those missing from it.
    @Test func nextTokenTopLogprobsEqualEchoScores() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let prompt = [3, 9, 27, 81, 243, 17, 51, 153, 203, 97]
        let r = try s.post("/v1/completions", ["prompt": [prompt], "max_tokens": 1, "logprobs": 20, "temperature": 0])
        #expect(r.status == 200)
        let lp = (r.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any]
        let top = (lp?["top_logprobs"] as? [Any])?.first as? [String: Any] ?? [:]
        #expect(top.count >= 5)   // 20 asked; tokens that print alike (partial UTF-8) share one key
        var checked = 0
        for (text, value) in top.sorted(by: { $0.key < $1.key }) {
            let ids = try s.post("/tokenize", ["content": text]).json["tokens"] as? [Int] ?? []
            guard ids.count == 1 else { continue }
            let e = try s.post("/v1/completions", ["prompt": [prompt + ids], "max_tokens": 0, "echo": true, "logprobs": 1, "temperature": 0])
            let echoed = ((e.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any] ?? []
            #expect((echoed.last as? Double) == (value as? Double), "token \(ids[0]) \(text.debugDescription)")
            checked += 1
        }
        #expect(checked >= 3, "\(top.keys.sorted())")
    }

    @Test func tokenizeAndDetokenize() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let t = try s.post("/tokenize", ["content": "héllo"])
        let ids = t.json["tokens"] as? [Int] ?? []
        #expect(ids == Array("héllo".utf8).map(Int.init))
        let d = try s.post("/detokenize", ["tokens": ids])
        #expect(d.json["content"] as? String == "héllo")
    }

    @Test func stopStrings() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let free = try s.post("/v1/completions", ["prompt": "abc", "max_tokens": 16, "temperature": 0])
        let text = ((free.json["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
        guard text.count >= 4 else { return }
        let stop = String(text.dropFirst(2).prefix(2))
        let cut = try s.post("/v1/completions", ["prompt": "abc", "max_tokens": 16, "temperature": 0, "stop": [stop]])
        let choice = (cut.json["choices"] as? [[String: Any]])?.first
        let expected = String(text[..<text.range(of: stop)!.lowerBound])
        #expect(choice?["text"] as? String == expected)
        #expect(choice?["finish_reason"] as? String == "stop")
    }
}
