import Foundation

/// Turns a request's engine events into its response: one JSON body when every choice has
/// finished, or server-sent events as tokens arrive. Loop thread only.
final class CompletionResponder: JobSink, @unchecked Sendable {
    private struct Choice {
        var text = ""
        var tokens: [GeneratedToken] = []
        var finishReason: String?
        var sentRole = false
        var prompt: PromptScores?
    }

    let exchange: Exchange
    let request: CompletionRequest
    let modelName: String
    let id: String
    let created = Int(Date().timeIntervalSince1970)
    let cancelJobs: () -> Void
    private var choices: [Choice]
    private var jobsAccepted = 0
    private var jobCount: Int
    private var promptTokens = 0
    private var promptByJob: [Int: PromptScores] = [:]
    private var failed = false

    init(exchange: Exchange, request: CompletionRequest, modelName: String, jobCount: Int, cancelJobs: @escaping () -> Void) {
        self.exchange = exchange
        self.request = request
        self.modelName = modelName
        self.jobCount = jobCount
        self.cancelJobs = cancelJobs
        id = (request.kind == .chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        choices = Array(repeating: Choice(), count: jobCount * request.n)
    }

    private var completionTokens: Int { choices.reduce(0) { $0 + $1.tokens.count } }

    func receive(_ event: JobEvent, job: Int) {
        guard exchange.isOpen, !failed else { return }
        switch event {
        case .accepted(let count):
            promptTokens += count * request.n
            jobsAccepted += 1
            if request.stream && jobsAccepted == 1 { exchange.startStream() }
        case .prompt(let scores):
            // Echo: the prompt goes in front of every choice of this job.
            let base = choiceBase(ofJob: job)
            for i in base..<(base + request.n) { choices[i].prompt = scores }
            if request.stream {
                for i in base..<(base + request.n) { sendChunk(choice: i, text: scores.text, tokens: [], prompt: scores, finish: nil) }
            }
        case .tokens(let choice, let tokens, let text):
            choices[choice].text += text
            choices[choice].tokens += tokens
            if request.stream { sendChunk(choice: choice, text: text, tokens: tokens, prompt: nil, finish: nil) }
        case .finished(let choice, let reason, let text):
            choices[choice].text += text
            choices[choice].finishReason = reason
            if request.stream { sendChunk(choice: choice, text: text, tokens: [], prompt: nil, finish: reason) }
            if choices.allSatisfy({ $0.finishReason != nil }) { complete() }
        case .failed(let error):
            failed = true
            cancelJobs()
            if exchange.isStreaming {
                exchange.sendEvent(error.json.bytes)
                exchange.endStream()
            } else {
                exchange.respond(error: error)
            }
        }
    }

    /// Jobs are numbered consecutively from the first one's id.
    private var firstJob = 0
    func setFirstJob(_ id: Int) { firstJob = id }
    private func choiceBase(ofJob job: Int) -> Int { (job - firstJob) * request.n }

    private func complete() {
        exchange.logDetails = "prompt_tokens=\(promptTokens) completion_tokens=\(completionTokens)"
        if request.stream {
            if request.includeUsage {
                exchange.sendEvent(JSON.object(header(chunk: true) + [("choices", .array([])), ("usage", usage)]).bytes)
            }
            exchange.endStream()
            return
        }
        if choices.contains(where: { $0.finishReason == "abort" }) {
            exchange.respond(error: .unavailable("The request was cancelled: the server is shutting down."))
            return
        }
        let items: [JSON] = choices.enumerated().map { i, c in
            switch request.kind {
            case .completion:
                var text = c.text
                if request.echo, let p = c.prompt { text = p.text + text }
                var fields: [(String, JSON)] = [("index", .int(i)), ("text", .string(text)),
                                                ("logprobs", completionLogprobs(c.tokens, prompt: request.echo ? c.prompt : nil)),
                                                ("finish_reason", .string(c.finishReason ?? "stop"))]
                if request.returnTokenIDs { fields.append(("token_ids", .ints(c.tokens.map(\.id)))) }
                return .object(fields)
            case .chat:
                var fields: [(String, JSON)] = [("index", .int(i)),
                                                ("message", .object([("role", .string("assistant")), ("content", .string(c.text))])),
                                                ("logprobs", chatLogprobs(c.tokens)),
                                                ("finish_reason", .string(c.finishReason ?? "stop"))]
                if request.returnTokenIDs { fields.append(("token_ids", .ints(c.tokens.map(\.id)))) }
                return .object(fields)
            }
        }
        exchange.respond(json: .object(header(chunk: false) + [("choices", .array(items)), ("usage", usage)]))
    }

    private func header(chunk: Bool) -> [(String, JSON)] {
        let object = switch (request.kind, chunk) {
        case (.completion, _): "text_completion"
        case (.chat, false): "chat.completion"
        case (.chat, true): "chat.completion.chunk"
        }
        return [("id", .string(id)), ("object", .string(object)), ("created", .int(created)), ("model", .string(modelName))]
    }

    private var usage: JSON {
        let c = completionTokens
        return .object([("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(c)), ("total_tokens", .int(promptTokens + c))])
    }

    private func sendChunk(choice: Int, text: String, tokens: [GeneratedToken], prompt: PromptScores?, finish: String?) {
        let item: JSON
        switch request.kind {
        case .completion:
            var fields: [(String, JSON)] = [("index", .int(choice)), ("text", .string(text)),
                                            ("logprobs", completionLogprobs(tokens, prompt: prompt)),
                                            ("finish_reason", finish.map { .string($0) } ?? .null)]
            if request.returnTokenIDs { fields.append(("token_ids", .ints(tokens.map(\.id)))) }
            item = .object(fields)
        case .chat:
            var delta: [(String, JSON)] = []
            if !choices[choice].sentRole {
                choices[choice].sentRole = true
                delta.append(("role", .string("assistant")))
            }
            if !text.isEmpty || finish == nil { delta.append(("content", .string(text))) }
            item = .object([("index", .int(choice)), ("delta", .object(delta)), ("logprobs", chatLogprobs(tokens)),
                            ("finish_reason", finish.map { .string($0) } ?? .null)])
        }
        exchange.sendEvent(JSON.object(header(chunk: true) + [("choices", .array([item]))]).bytes)
    }

    /// The legacy shape: parallel arrays of tokens, their log-probs, the top alternatives as
    /// {token: logprob}, and character offsets into the text.
    private func completionLogprobs(_ tokens: [GeneratedToken], prompt: PromptScores?) -> JSON {
        guard request.logprobs != nil else { return .null }
        var strings: [JSON] = [], logprobs: [JSON] = [], tops: [JSON] = [], offsets: [JSON] = []
        var offset = 0
        if let prompt, !prompt.strings.isEmpty {
            for (i, s) in prompt.strings.enumerated() {
                strings.append(.string(s))
                logprobs.append(i < prompt.logprobs.count ? prompt.logprobs[i].map { .double(Double($0)) } ?? .null : .null)
                let top = i < prompt.top.count ? prompt.top[i] : nil
                tops.append(top.map { dict($0) } ?? .null)
                offsets.append(.int(offset))
                offset += s.count
            }
        } else if let prompt {
            offset = prompt.text.count
        }
        for t in tokens {
            strings.append(.string(t.token))
            logprobs.append(t.logprob.map { .double(Double($0)) } ?? .null)
            tops.append(dict(t.top))
            offsets.append(.int(offset))
            offset += t.token.count
        }
        return .object([("tokens", .array(strings)), ("token_logprobs", .array(logprobs)),
                        ("top_logprobs", .array(tops)), ("text_offset", .array(offsets))])
    }

    private func dict(_ top: [TokenLogprob]) -> JSON {
        var seen = Set<String>()
        var members: [(String, JSON)] = []
        for t in top where seen.insert(t.token).inserted { members.append((t.token, .double(Double(t.logprob)))) }
        return .object(members)
    }

    /// The chat shape: one entry per token with its bytes and its top alternatives.
    private func chatLogprobs(_ tokens: [GeneratedToken]) -> JSON {
        guard request.logprobs != nil else { return .null }
        func entry(_ token: String, _ logprob: Float?) -> [(String, JSON)] {
            [("token", .string(token)), ("logprob", .double(Double(logprob ?? 0))), ("bytes", .ints(token.utf8.map { Int($0) }))]
        }
        return .object([("content", .array(tokens.map { t in
            .object(entry(t.token, t.logprob) + [("top_logprobs", .array(t.top.map { .object(entry($0.token, $0.logprob)) }))])
        }))])
    }
}
