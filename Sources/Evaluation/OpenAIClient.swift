import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A blocking client for the OpenAI-compatible routes Graft serves (any such server works).
/// Every response's `model` must name the variant asked for: a quarantined variant's traffic goes
/// to base, and such an answer is an error, never a result.
public final class OpenAIClient: Sendable {
    public let baseURL: URL
    let session: URLSession
    let timeout: TimeInterval
    let token: String?

    public init(server: String, timeout: TimeInterval = 600, adminToken: String? = nil) throws(EvaluationError) {
        guard let url = URL(string: server.hasSuffix("/") ? String(server.dropLast()) : server),
              url.scheme == "http" || url.scheme == "https" else {
            throw .usage("--server must be an http(s) URL, got '\(server)'")
        }
        baseURL = url
        self.timeout = timeout
        token = adminToken
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = timeout
        config.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: config)
    }

    /// One HTTP exchange; retries connection failures and 429/503 a few times (Retry-After).
    func request(_ method: String, _ path: String, body: [String: Any]? = nil, admin: Bool = false) throws(EvaluationError) -> [String: Any] {
        var req = URLRequest(url: baseURL.appendingPathComponent(path))
        req.httpMethod = method
        req.timeoutInterval = timeout
        if let body {
            req.httpBody = try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if admin, let token { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        var lastError = ""
        for attempt in 0..<5 {
            let box = ResponseBox()
            let sem = DispatchSemaphore(value: 0)
            session.dataTask(with: req) { data, response, error in
                box.set(data, response as? HTTPURLResponse, error)
                sem.signal()
            }.resume()
            sem.wait()
            let (data, response, error) = box.get()
            if let error {
                lastError = "\(method) \(path): \(error.localizedDescription)"
                Thread.sleep(forTimeInterval: 0.5 * Double(attempt + 1))
                continue
            }
            let status = response?.statusCode ?? 0
            if status == 429 || status == 503 {
                let wait = Double(response?.value(forHTTPHeaderField: "Retry-After") ?? "") ?? Double(attempt + 1)
                lastError = "\(method) \(path): HTTP \(status)"
                Thread.sleep(forTimeInterval: min(wait, 30))
                continue
            }
            let json = data.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
            guard (200..<300).contains(status), let json else {
                let message = ((json?["error"] as? [String: Any])?["message"] as? String)
                    ?? data.map { String(decoding: $0.prefix(300), as: UTF8.self) } ?? ""
                throw .server("\(method) \(path): HTTP \(status): \(message)")
            }
            return json
        }
        throw .server("\(lastError) (after 5 tries; is `graft serve` running at \(baseURL)?)")
    }

    func checkServed(_ json: [String: Any], asked: String) throws(EvaluationError) {
        let served = json["model"] as? String ?? ""
        guard served == asked else { throw .wrongVariant(asked: asked, servedBy: served.isEmpty ? "(no model field)" : served) }
    }

    /// `GET /v1/models`: the model objects, base and every variant.
    public func models() throws(EvaluationError) -> [[String: Any]] {
        (try request("GET", "v1/models")["data"] as? [[String: Any]]) ?? []
    }

    /// Whether admin routes (`GET /v1/variants…`) are asked with a token.
    public var hasAdminToken: Bool { token != nil }

    public struct Generation: Sendable {
        public var text: String
        public var finishReason: String
        public var promptTokens: Int
        public var completionTokens: Int
    }

    /// `POST /v1/chat/completions`, non-streaming.
    public func chat(model: String, messages: [Message], maxTokens: Int, temperature: Double, topP: Double = 1,
                     seed: Int, stop: [String] = []) throws(EvaluationError) -> Generation {
        var body: [String: Any] = [
            "model": model, "messages": messages.map { ["role": $0.role, "content": $0.content] },
            "max_tokens": maxTokens, "temperature": temperature, "top_p": topP, "seed": seed, "stream": false,
        ]
        if !stop.isEmpty { body["stop"] = stop }
        let json = try request("POST", "v1/chat/completions", body: body)
        try checkServed(json, asked: model)
        guard let choice = (json["choices"] as? [[String: Any]])?.first,
              let message = choice["message"] as? [String: Any] else {
            throw .server("chat completion without choices[0].message")
        }
        let usage = json["usage"] as? [String: Any]
        return Generation(text: message["content"] as? String ?? "", finishReason: choice["finish_reason"] as? String ?? "",
                          promptTokens: usage?["prompt_tokens"] as? Int ?? 0,
                          completionTokens: usage?["completion_tokens"] as? Int ?? 0)
    }

    public struct PromptScores: Sendable {
        public var tokens: [String]
        /// nil for the first token (nothing predicts it).
        public var logprobs: [Double?]
        /// Character offset of each token in the prompt text.
        public var offsets: [Int]
    }

    /// The most likely next tokens after `prompt` with their log-probs (legacy completions, one
    /// greedy token, `logprobs: k`): token text → log-prob; empty when the server gives none (or
    /// stopped without a token). One request and one logits row instead of an echo per candidate.
    public func nextTokenLogprobs(model: String, prompt: String, top k: Int = 20) throws(EvaluationError) -> [String: Double] {
        let json = try request("POST", "v1/completions", body: [
            "model": model, "prompt": prompt, "logprobs": k, "max_tokens": 1, "temperature": 0,
        ])
        try checkServed(json, asked: model)
        guard let choice = (json["choices"] as? [[String: Any]])?.first,
              let lp = choice["logprobs"] as? [String: Any],
              let first = (lp["top_logprobs"] as? [Any])?.first as? [String: Any] else { return [:] }
        var out: [String: Double] = [:]
        for (token, value) in first {
            if let d = (value as? NSNumber)?.doubleValue { out[token] = d }
        }
        return out
    }

    /// Prompt scoring as the legacy completions API did: `echo: true, logprobs: 1, max_tokens: 0`.
    public func score(model: String, prompt: String) throws(EvaluationError) -> PromptScores {
        let json = try request("POST", "v1/completions", body: [
            "model": model, "prompt": prompt, "echo": true, "logprobs": 1, "max_tokens": 0, "temperature": 0,
        ])
        try checkServed(json, asked: model)
        guard let choice = (json["choices"] as? [[String: Any]])?.first,
              let lp = choice["logprobs"] as? [String: Any],
              let tokens = lp["tokens"] as? [String], let raw = lp["token_logprobs"] as? [Any] else {
            throw .server("completion without choices[0].logprobs.tokens/token_logprobs (does the server support echo scoring?)")
        }
        let values: [Double?] = raw.map { ($0 as? NSNumber)?.doubleValue }
        var offsets = lp["text_offset"] as? [Int] ?? []
        if offsets.count != tokens.count {
            // Without text_offset, the tokens' own text lengths give the offsets.
            offsets = []
            var at = 0
            for t in tokens { offsets.append(at); at += t.count }
        }
        return PromptScores(tokens: tokens, logprobs: values, offsets: offsets)
    }
}

final class ResponseBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (Data?, HTTPURLResponse?, Error?) = (nil, nil, nil)
    func set(_ d: Data?, _ r: HTTPURLResponse?, _ e: Error?) { lock.lock(); value = (d, r, e); lock.unlock() }
    func get() -> (Data?, HTTPURLResponse?, Error?) { lock.lock(); defer { lock.unlock() }; return value }
}
