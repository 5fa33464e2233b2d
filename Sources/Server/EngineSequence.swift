import LanguageModel
import Tokenizers

/// A job as the engine holds it: its tokenized prompt and how many of its choices still run.
final class ActiveJob {
    let job: GenerationJob
    let prompt: [Int]
    var remaining: Int
    var firstTokenSeen = false

    init(job: GenerationJob, prompt: [Int]) {
        self.job = job
        self.prompt = prompt
        self.remaining = job.n
    }
}

/// One choice of a job: its KV cache and decoding state. A small state machine:
/// waiting → prefilling (prompt read in chunks) → decoding (one token per step) → finished.
final class EngineSequence {
    enum State { case waiting, prefilling, decoding, finished }

    let active: ActiveJob
    let choice: Int
    /// Positions this sequence may fill: prompt + max_tokens, within the model's context.
    let limit: Int
    /// KV bytes reserved at admission (its worst case), returned when it ends.
    let reservedBytes: Int
    /// Whether the prompt's own log-probs are wanted (echo with logprobs); choice 0 only.
    let scoresPrompt: Bool
    var state = State.waiting
    var cache: KVCache?
    /// Prompt tokens fed to the model so far.
    var fed = 0
    /// The token sampled last, to feed in the next step.
    var pending: Int?
    var generated: [Int] = []
    var history: [Int]
    var sampler: Sampler
    var decoder: StreamingDecoder?
    var stops: StopMatcher
    /// Prompt log-probs gathered chunk by chunk (scoresPrompt only).
    var promptLogprobs: [Float?] = []
    var promptTop: [[TokenLogprob]?] = []
    var lastTokenTime: UInt64 = 0

    init(active: ActiveJob, choice: Int, limit: Int, reservedBytes: Int, tokenizer: Tokenizer?) {
        self.active = active
        self.choice = choice
        self.limit = limit
        self.reservedBytes = reservedBytes
        let job = active.job
        scoresPrompt = choice == 0 && job.echo && job.logprobs != nil
        history = active.prompt
        var parameters = job.parameters
        // n > 1 with a seed: each choice its own reproducible stream.
        if let seed = parameters.seed { parameters.seed = seed &+ UInt64(choice) }
        sampler = Sampler(parameters)
        decoder = tokenizer.map { StreamingDecoder(tokenizer: $0, skipSpecialTokens: true) }
        stops = StopMatcher(stops: job.parameters.stopStrings)
    }

    var jobID: Int { active.job.id }
    var promptCount: Int { active.prompt.count }
}
