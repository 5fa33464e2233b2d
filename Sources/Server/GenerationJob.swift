import LanguageModel
import Tokenizers

/// What a request gives the engine: one prompt, sampled `n` times.
enum PromptInput: Sendable {
    /// Encoded with the tokenizer's special tokens (BOS), as `graft generate` does.
    case text(String)
    case tokens([Int])
    /// Rendered with the model's chat template, then encoded without special tokens.
    case chat([ChatMessage])
}

/// One prompt of a request, handed to the engine. Choices `choiceBase ..< choiceBase + n` of the
/// response come from it (a legacy completions request may carry several prompts).
struct GenerationJob: Sendable {
    let id: Int
    let prompt: PromptInput
    /// `maxTokens` is already clamped to the server's cap; stop strings and tokens included.
    let parameters: SamplingParameters
    let n: Int
    let choiceBase: Int
    /// Top log-probs to return per token (0: only the chosen token's); nil: no log-probs.
    let logprobs: Int?
    /// Return the prompt (and, with `logprobs`, every prompt token's log-prob) before the completion.
    let echo: Bool
    /// Keep generating through the model's end-of-sequence tokens.
    var ignoreEOS = false
    let sink: any JobSink
    /// When the request was submitted (uptime nanoseconds), for time to first token.
    let submitted: UInt64
    /// The weights it runs on (nil: base), pinned for the job's life: a replace or delete of
    /// the name never changes them under it.
    var variant: Variant? = nil
}

/// A token's log-prob under the model (raw logits, before temperature or penalties).
struct TokenLogprob: Sendable {
    let id: Int
    let token: String
    let logprob: Float
}

/// One generated token as a response reports it.
struct GeneratedToken: Sendable {
    let id: Int
    /// The token's own text (for log-prob listings); partial UTF-8 shows as U+FFFD.
    let token: String
    let logprob: Float?
    let top: [TokenLogprob]
}

/// The prompt as scored for `echo`: log-prob of each token given the ones before it (none for
/// the first).
struct PromptScores: Sendable {
    let text: String
    let tokens: [Int]
    let strings: [String]
    let logprobs: [Float?]
    let top: [[TokenLogprob]?]
}

/// What the engine reports about a job; delivered on the loop thread, in order.
enum JobEvent: Sendable {
    /// Tokenized and queued; the prompt as the model reads it.
    case accepted(promptTokens: Int)
    case prompt(PromptScores)
    /// New tokens of one choice and the text they made visible (held back around stop strings
    /// and split UTF-8 characters, so possibly empty).
    case tokens(choice: Int, [GeneratedToken], text: String)
    /// `reason` is OpenAI's finish_reason: stop, length, or abort (cancelled, shutting down).
    case finished(choice: Int, reason: String, text: String)
    /// The whole job failed before or while running; no further events.
    case failed(APIError)
}

/// The loop-side receiver of a job's events. Called on the loop thread only.
protocol JobSink: AnyObject, Sendable {
    func receive(_ event: JobEvent, job: Int)
}
