import LanguageModel
import Tokenizers

/// The two OpenAI generation endpoints.
enum CompletionKind {
    case completion   // POST /v1/completions (legacy)
    case chat         // POST /v1/chat/completions
}

/// A validated `/v1/completions` or `/v1/chat/completions` body.
struct CompletionRequest {
    let kind: CompletionKind
    var model: String?
    var prompts: [PromptInput] = []
    var parameters = SamplingParameters()
    var n = 1
    var stream = false
    var includeUsage = false
    /// Log-probs: nil (off) or how many alternatives per token.
    var logprobs: Int?
    var echo = false
    var returnTokenIDs = false
    /// vLLM's extension: generate through end-of-sequence tokens (fixed lengths for benchmarks).
    var ignoreEOS = false

    /// Reads and checks every field; unknown fields are ignored, as OpenAI's server does.
    init(kind: CompletionKind, body: JSONValue, options: ServerOptions) throws(APIError) {
        self.kind = kind
        guard body.members != nil else { throw .invalid("The request body must be a JSON object.") }
        model = try body.optionalString("model")
        stream = try body.optionalBool("stream") ?? false
        if let so = body["stream_options"], !so.isNull {
            includeUsage = so["include_usage"]?.bool ?? false
        }
        n = try body.optionalInt("n") ?? 1
        guard n >= 1 && n <= options.maxN else { throw .invalid("n must be between 1 and \(options.maxN).", param: "n") }
        if let bestOf = try body.optionalInt("best_of"), bestOf != n {
            throw .invalid("best_of other than n is not supported.", param: "best_of")
        }
        if let suffix = body["suffix"], !suffix.isNull { throw .invalid("suffix is not supported.", param: "suffix") }

        switch kind {
        case .completion:
            prompts = try Self.prompts(body["prompt"])
            echo = try body.optionalBool("echo") ?? false
            if let lp = body["logprobs"], !lp.isNull {
                guard let k = lp.int, k >= 0, k <= 20 else { throw .invalid("logprobs must be an integer from 0 to 20.", param: "logprobs") }
                logprobs = k
            }
        case .chat:
            prompts = [.chat(try Self.messages(body["messages"]))]
            if try body.optionalBool("logprobs") == true {
                let k = try body.optionalInt("top_logprobs") ?? 0
                guard k >= 0 && k <= 20 else { throw .invalid("top_logprobs must be from 0 to 20.", param: "top_logprobs") }
                logprobs = k
            } else if let k = try body.optionalInt("top_logprobs"), k > 0 {
                throw .invalid("top_logprobs needs logprobs: true.", param: "top_logprobs")
            }
        }
        returnTokenIDs = try body.optionalBool("return_token_ids") ?? false
        ignoreEOS = try body.optionalBool("ignore_eos") ?? false

        var p = SamplingParameters()
        var maxTokens = try body.optionalInt("max_tokens")
        if maxTokens == nil { maxTokens = try body.optionalInt("max_completion_tokens") }
        p.maxTokens = maxTokens ?? (kind == .completion ? 16 : options.defaultMaxTokens)
        guard p.maxTokens >= 0 else { throw .invalid("max_tokens must be ≥ 0.", param: "max_tokens") }
        guard p.maxTokens <= options.maxTokensLimit else {
            throw .invalid("max_tokens is \(p.maxTokens); this server allows at most \(options.maxTokensLimit) (--max-tokens-limit).", param: "max_tokens")
        }
        if kind == .chat && p.maxTokens == 0 { throw .invalid("max_tokens must be ≥ 1 for chat.", param: "max_tokens") }
        let temperature = try body.optionalDouble("temperature") ?? 1
        guard temperature >= 0 && temperature <= 2 else { throw .invalid("temperature must be from 0 to 2.", param: "temperature") }
        p.temperature = Float(temperature)
        let topP = try body.optionalDouble("top_p") ?? 1
        guard topP > 0 && topP <= 1 else { throw .invalid("top_p must be in (0, 1].", param: "top_p") }
        p.topP = Float(topP)
        // Extensions that vLLM and llama.cpp accept too.
        let topK = try body.optionalInt("top_k") ?? 0
        guard topK >= -1 else { throw .invalid("top_k must be ≥ 0 (or -1: off).", param: "top_k") }
        p.topK = max(0, topK)
        let minP = try body.optionalDouble("min_p") ?? 0
        guard minP >= 0 && minP <= 1 else { throw .invalid("min_p must be from 0 to 1.", param: "min_p") }
        p.minP = Float(minP)
        let penalty = try body.optionalDouble("repetition_penalty") ?? 1
        guard penalty > 0 && penalty <= 10 else { throw .invalid("repetition_penalty must be in (0, 10].", param: "repetition_penalty") }
        p.repetitionPenalty = Float(penalty)
        for name in ["frequency_penalty", "presence_penalty"] {
            if let v = try body.optionalDouble(name), v != 0 {
                throw .invalid("\(name) is not supported (use repetition_penalty).", param: name)
            }
        }
        if let seed = body["seed"], !seed.isNull {
            guard let s = seed.int else { throw .invalid("seed must be an integer.", param: "seed") }
            p.seed = UInt64(bitPattern: Int64(s))
        }
        if let stop = body["stop"], !stop.isNull {
            if let s = stop.string {
                p.stopStrings = [s]
            } else if let items = stop.array {
                guard items.count <= 16 else { throw .invalid("stop takes at most 16 strings.", param: "stop") }
                for item in items {
                    guard let s = item.string else { throw .invalid("stop must be a string or an array of strings.", param: "stop") }
                    p.stopStrings.append(s)
                }
            } else {
                throw .invalid("stop must be a string or an array of strings.", param: "stop")
            }
            // The stop matcher holds back text that could start a stop string: keep them short so
            // no request can make the engine thread crawl.
            if p.stopStrings.contains(where: { $0.count > 256 }) {
                throw .invalid("stop strings are limited to 256 characters.", param: "stop")
            }
        }
        // Text is tokenized on the engine thread: refuse text that cannot fit the prompt cap
        // before it costs anything (no tokenizer here makes a token out of more than 32 bytes
        // on average).
        let textBytes = prompts.reduce(0) { total, prompt in
            switch prompt {
            case .text(let s): total + s.utf8.count
            case .chat(let messages): total + messages.reduce(0) { $0 + $1.content.utf8.count }
            case .tokens: total
            }
        }
        if textBytes > options.maxPromptTokens * 32 {
            throw .invalid("The prompt is too long (\(textBytes) bytes; at most \(options.maxPromptTokens) tokens are accepted).", param: "prompt")
        }
        if let ids = body["stop_token_ids"]?.array {
            p.stopTokens = ids.compactMap(\.int)
        }
        parameters = p
    }

    /// `prompt`: a string, an array of strings, an array of token ids, or an array of arrays of ids.
    private static func prompts(_ value: JSONValue?) throws(APIError) -> [PromptInput] {
        guard let value, !value.isNull else { throw .invalid("prompt is required.", param: "prompt") }
        if let s = value.string { return [.text(s)] }
        guard let items = value.array, !items.isEmpty else {
            throw .invalid("prompt must be a string, an array of strings, or token ids.", param: "prompt")
        }
        if items.allSatisfy({ $0.string != nil }) { return items.map { .text($0.string!) } }
        if items.allSatisfy({ $0.double != nil }) { return [.tokens(try tokenIDs(items))] }
        if items.allSatisfy({ $0.array != nil }) {
            var out: [PromptInput] = []
            for item in items {
                guard let ids = item.array, !ids.isEmpty else { throw .invalid("a token-id prompt is empty.", param: "prompt") }
                out.append(.tokens(try tokenIDs(ids)))
            }
            return out
        }
        throw .invalid("prompt must be a string, an array of strings, or token ids.", param: "prompt")
    }

    private static func tokenIDs(_ items: [JSONValue]) throws(APIError) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(items.count)
        for item in items {
            guard let id = item.int else { throw .invalid("token ids must be integers.", param: "prompt") }
            ids.append(id)
        }
        return ids
    }

    /// `messages`: role and content (a string, null, or text parts).
    private static func messages(_ value: JSONValue?) throws(APIError) -> [ChatMessage] {
        guard let items = value?.array, !items.isEmpty else {
            throw .invalid("messages must be a non-empty array.", param: "messages")
        }
        var out: [ChatMessage] = []
        for item in items {
            guard let role = item["role"]?.string else { throw .invalid("each message needs a string role.", param: "messages") }
            var content = ""
            if let c = item["content"], !c.isNull {
                if let s = c.string {
                    content = s
                } else if let parts = c.array {
                    for part in parts {
                        guard part["type"]?.string == "text", let text = part["text"]?.string else {
                            throw .invalid("only text content parts are supported.", param: "messages")
                        }
                        content += text
                    }
                } else {
                    throw .invalid("message content must be a string or an array of text parts.", param: "messages")
                }
            }
            out.append(ChatMessage(role: role, content: content))
        }
        return out
    }
}

extension JSONValue {
    func optionalString(_ key: String) throws(APIError) -> String? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let s = v.string else { throw .invalid("\(key) must be a string.", param: key) }
        return s
    }

    func optionalBool(_ key: String) throws(APIError) -> Bool? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let b = v.bool else { throw .invalid("\(key) must be a boolean.", param: key) }
        return b
    }

    func optionalInt(_ key: String) throws(APIError) -> Int? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let i = v.int else { throw .invalid("\(key) must be an integer.", param: key) }
        return i
    }

    func optionalDouble(_ key: String) throws(APIError) -> Double? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let d = v.double, d.isFinite else { throw .invalid("\(key) must be a number.", param: key) }
        return d
    }
}
