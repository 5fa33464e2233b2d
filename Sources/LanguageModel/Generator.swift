import Foundation

/// Why a generation ended (OpenAI's `finish_reason`).
public enum FinishReason: String, Sendable {
    case stop
    case length
    case cancelled
}

public struct GenerationResult: Sendable {
    public var tokens: [Int] = []
    public var finishReason: FinishReason = .length
    public var promptTokens: Int = 0
    /// Seconds spent reading the prompt (time to first token) and generating the rest.
    public var prefillSeconds: Double = 0
    public var decodeSeconds: Double = 0
}

/// Generates one sequence. `onToken` sees each new token and returns false to stop (a stop
/// string found by the caller, a cancelled request). Stop tokens are the model's EOS ids plus
/// the caller's; the stop token itself is not returned.
public func generate(model: Model, prompt: [Int], parameters: SamplingParameters,
                     prefillChunk: Int = 512,
                     onToken: (Int) -> Bool) throws -> GenerationResult {
    var result = GenerationResult()
    result.promptTokens = prompt.count
    guard !prompt.isEmpty else { return result }
    let limit = min(model.config.maxPositionEmbeddings, prompt.count + max(0, parameters.maxTokens))
    if prompt.count > model.config.maxPositionEmbeddings {
        throw ModelError.contextOverflow(needed: prompt.count, limit: model.config.maxPositionEmbeddings)
    }
    let cache = model.makeCache(maxTokens: limit)
    let stops = Set(model.config.eosTokenIds + parameters.stopTokens)
    var sampler = Sampler(parameters)

    let t0 = Date()
    var logits: [Float] = []
    var start = 0
    while start < prompt.count {
        let end = min(prompt.count, start + prefillChunk)
        let out = try model.forward([ForwardInput(cache: cache, tokens: Array(prompt[start..<end]),
                                                  logits: end == prompt.count ? .last : .none)])
        if end == prompt.count { logits = out[0][0] }
        start = end
    }
    result.prefillSeconds = Date().timeIntervalSince(t0)
    let t1 = Date()
    var history = prompt
    result.finishReason = .length
    while result.tokens.count < parameters.maxTokens {
        let token = sampler.sample(logits, history: history)
        if stops.contains(token) {
            result.finishReason = .stop
            break
        }
        result.tokens.append(token)
        history.append(token)
        if !onToken(token) {
            result.finishReason = .stop
            break
        }
        if result.tokens.count >= parameters.maxTokens || cache.count >= limit { break }
        logits = try model.forward([ForwardInput(cache: cache, tokens: [token])])[0][0]
    }
    result.decodeSeconds = Date().timeIntervalSince(t1)
    return result
}
