import Foundation
import LanguageModel
import Logging
import Tokenizers

/// The engine thread: continuous batching over one model. Between steps it takes new jobs
/// (tokenizing them here, off the loop thread), applies cancellations, and admits waiting
/// sequences while the batch and the KV-cache budget allow; each step is one `Model.forward`
/// over every live sequence — a prefill chunk or one decode token each — after which it
/// samples, detokenizes and posts the new tokens to the loop.
///
/// The model's batch invariance makes a sequence's tokens independent of its companions, so
/// greedy serving reproduces `graft generate` exactly.
final class Engine: @unchecked Sendable {
    let model: Model
    let tokenizer: Tokenizer?
    let options: ServerOptions
    let metrics: ServerMetrics
    let logger: Logger
    /// Runs a closure on the loop thread (through uv_async_send).
    private let post: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let budgetBytes: Int
    private let bytesPerToken: Int
    private let stopTokens: Set<Int>
    private let chatTemplate: ChatTemplate?
    private let chatTemplateError: String?

    // Shared with the loop thread, under `condition`.
    private let condition = NSCondition()
    private var incoming: [GenerationJob] = []
    private var cancelled: Set<Int> = []
    private var tasks: [@Sendable () -> Void] = []
    private var accepting = true
    private var terminate = false
    private var abortAll = false
    /// Sequences not yet admitted (incoming jobs' choices plus the waiting queue).
    private var queuedSequences = 0
    private var liveSequences = 0

    /// Called on the engine thread when a variant yields non-finite logits (the server marks
    /// it quarantined on the loop thread).
    var onQuarantine: (@Sendable (Variant) -> Void)?

    // Engine thread only.
    /// Variants that produced non-finite logits: their sequences end with an error.
    private var quarantined: Set<ObjectIdentifier> = []
    private var waiting: [EngineSequence] = []
    private var live: [EngineSequence] = []
    private var reservedBytes = 0
    private var thread: Thread?
    private let exited = NSCondition()
    private var hasExited = false

    init(model: Model, tokenizer: Tokenizer?, options: ServerOptions, metrics: ServerMetrics, logger: Logger,
         post: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.metrics = metrics
        self.logger = logger
        self.post = post
        budgetBytes = max(0, options.kvCacheMB) * 1024 * 1024
        bytesPerToken = KVCache.bytesPerToken(layers: model.config.layers, kvDim: model.config.kvDim, type: model.kvCacheType)
        var stops = Set(model.config.eosTokenIds)
        if let eos = tokenizer?.eosTokenID { stops.insert(eos) }
        stopTokens = stops
        if let tokenizer, tokenizer.chatTemplate != nil {
            do {
                chatTemplate = try tokenizer.makeChatTemplate()
                chatTemplateError = nil
            } catch {
                chatTemplate = nil
                chatTemplateError = "the model's chat template does not compile: \(error)"
            }
        } else {
            chatTemplate = nil
            chatTemplateError = tokenizer == nil ? "the model has no tokenizer (send token ids to /v1/completions)"
                                                 : "the model has no chat template (tokenizer_config.json has no chat_template)"
        }
        metrics.kvCacheBudgetBytes.set(Double(budgetBytes))
    }

    func start() {
        let thread = Thread { [self] in
            run()
            exited.lock()
            hasExited = true
            exited.broadcast()
            exited.unlock()
        }
        thread.name = "graft-engine"
        thread.stackSize = 16 << 20
        self.thread = thread
        thread.start()
    }

    // MARK: Called from the loop thread

    /// Queues a job, or says why not (429 when the queue is full, 503 when shutting down).
    func submit(_ job: GenerationJob) -> APIError? {
        condition.lock()
        defer { condition.unlock() }
        guard accepting else { return .unavailable("The server is shutting down.") }
        if queuedSequences + job.n > options.maxQueue && queuedSequences > 0 {
            return .overloaded("Too many requests are waiting (\(queuedSequences) sequences queued); retry later.")
        }
        queuedSequences += job.n
        incoming.append(job)
        condition.signal()
        return nil
    }

    /// Drops a job's sequences (its client went away) and frees their KV caches.
    func cancel(job id: Int) {
        condition.lock()
        cancelled.insert(id)
        condition.signal()
        condition.unlock()
    }

    /// Runs `work` on the engine thread between steps (tokenization for /tokenize, say).
    func perform(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        tasks.append(work)
        condition.signal()
        condition.unlock()
    }

    /// Refuses new jobs; running and queued ones go on.
    func stopAccepting() {
        condition.lock()
        accepting = false
        condition.unlock()
    }

    /// Ends every job now with finish_reason "abort" (the shutdown grace period is over).
    func abortEverything() {
        condition.lock()
        abortAll = true
        condition.signal()
        condition.unlock()
    }

    /// Whether no job is queued or running.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return queuedSequences == 0 && liveSequences == 0 && incoming.isEmpty
    }

    var load: (queued: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (queuedSequences, liveSequences)
    }

    /// Stops the thread after its current step and waits for it.
    func shutdown() {
        condition.lock()
        terminate = true
        condition.signal()
        condition.unlock()
        exited.lock()
        while thread != nil && !hasExited { exited.wait() }
        exited.unlock()
    }

    // MARK: Engine thread

    private func run() {
        while true {
            condition.lock()
            while incoming.isEmpty && cancelled.isEmpty && tasks.isEmpty && waiting.isEmpty && live.isEmpty
                    && !terminate && !abortAll {
                condition.wait()
            }
            if terminate {
                condition.unlock()
                return
            }
            let newJobs = incoming
            let newTasks = tasks
            var toCancel = cancelled
            incoming.removeAll()
            tasks.removeAll()
            cancelled.removeAll()
            let abort = abortAll
            abortAll = false
            condition.unlock()

            for task in newTasks { task() }
            if abort {
                for job in newJobs { toCancel.insert(job.id) }
                for s in waiting + live { toCancel.insert(s.jobID) }
            }
            for job in newJobs {
                if toCancel.contains(job.id) {
                    changeQueued(by: -job.n)
                    send(job, .failed(.unavailable("The server is shutting down.")))
                } else {
                    prepare(job)
                }
            }
            if !toCancel.isEmpty { cancel(toCancel) }
            admit()
            if !live.isEmpty {
                step()
                if options.stepDelay > 0 { Thread.sleep(forTimeInterval: options.stepDelay) }
            }
            publishGauges()
        }
    }

    private func send(_ job: GenerationJob, _ event: JobEvent) {
        let sink = job.sink, id = job.id
        post { sink.receive(event, job: id) }
    }

    private func changeQueued(by delta: Int) {
        condition.lock()
        queuedSequences += delta
        condition.unlock()
    }

    private func publishGauges() {
        condition.lock()
        liveSequences = live.count
        condition.unlock()
        metrics.queueDepth.set(Double(waiting.count))
        metrics.running.set(Double(live.count))
        metrics.kvCacheReservedBytes.set(Double(reservedBytes))
        metrics.kvCacheBytes.set(Double(live.reduce(0) { $0 + ($1.cache?.bytes ?? 0) }))
    }

    /// Tokenizes and validates a job, then queues its choices (or fails it with a 400).
    private func prepare(_ job: GenerationJob) {
        let prompt: [Int]
        do {
            prompt = try tokenize(job.prompt)
        } catch let error as APIError {
            changeQueued(by: -job.n)
            send(job, .failed(error))
            return
        } catch {
            changeQueued(by: -job.n)
            send(job, .failed(.invalid("\(error)", param: "messages")))
            return
        }
        let context = model.config.maxPositionEmbeddings
        var failure: APIError?
        if prompt.isEmpty {
            failure = .invalid("The prompt is empty after tokenization.", param: "prompt")
        } else if prompt.count > options.maxPromptTokens {
            failure = .invalid("The prompt has \(prompt.count) tokens; this server accepts at most \(options.maxPromptTokens) (--max-prompt-tokens).", param: "prompt")
        } else if prompt.count >= context, job.parameters.maxTokens > 0 || prompt.count > context {
            failure = .invalid("This model's maximum context length is \(context) tokens; the prompt has \(prompt.count).", param: "prompt")
        }
        let limit = min(context, prompt.count + max(0, job.parameters.maxTokens))
        let reserve = limit * bytesPerToken
        if failure == nil && reserve > budgetBytes {
            failure = .invalid("The prompt and max_tokens need \(reserve / (1 << 20) + 1) MiB of KV cache; the server's budget is \(options.kvCacheMB) MiB (--kv-cache-mb). Lower max_tokens or shorten the prompt.", param: "max_tokens")
        }
        if let failure {
            changeQueued(by: -job.n)
            send(job, .failed(failure))
            return
        }
        send(job, .accepted(promptTokens: prompt.count))
        if job.echo && job.logprobs == nil {
            let text = tokenizer?.decode(prompt, skipSpecialTokens: false) ?? ""
            send(job, .prompt(PromptScores(text: text, tokens: prompt, strings: [], logprobs: [], top: [])))
        }
        metrics.promptTokens.increment(by: Int64(prompt.count * job.n))
        let active = ActiveJob(job: job, prompt: prompt)
        for choice in 0..<job.n {
            waiting.append(EngineSequence(active: active, choice: choice, limit: limit, reservedBytes: reserve, tokenizer: tokenizer))
        }
    }

    private func tokenize(_ input: PromptInput) throws -> [Int] {
        switch input {
        case .tokens(let ids):
            let vocab = model.config.vocabSize
            if let bad = ids.first(where: { $0 < 0 || $0 >= vocab }) {
                throw APIError.invalid("Token id \(bad) is outside the vocabulary (0..<\(vocab)).", param: "prompt")
            }
            return ids
        case .text(let text):
            guard let tokenizer else {
                throw APIError.invalid("This model has no tokenizer.json: send the prompt as token ids.", param: "prompt")
            }
            return tokenizer.encode(text, addSpecialTokens: true)
        case .chat(let messages):
            guard let tokenizer, let chatTemplate else {
                throw APIError.invalid("Chat completions are unavailable: \(chatTemplateError ?? "no chat template").", param: "messages")
            }
            let text: String
            do {
                text = try chatTemplate.render(messages: messages, addGenerationPrompt: true)
            } catch {
                throw APIError.invalid("The chat template failed on these messages: \(error)", param: "messages")
            }
            return tokenizer.encode(text, addSpecialTokens: false)
        }
    }

    /// Removes the sequences of cancelled jobs, waiting or live; their caches go with them.
    private func cancel(_ ids: Set<Int>) {
        var removedQueued = 0
        waiting.removeAll { s in
            guard ids.contains(s.jobID) else { return false }
            removedQueued += 1
            end(s, reason: "abort")
            return true
        }
        changeQueued(by: -removedQueued)
        live.removeAll { s in
            guard ids.contains(s.jobID) else { return false }
            end(s, reason: "abort")
            return true
        }
    }

    /// First come, first served: admits from the head of the queue while the batch and the
    /// KV budget have room.
    private func admit() {
        var admitted = 0
        while let next = waiting.first, live.count < options.maxBatch, reservedBytes + next.reservedBytes <= budgetBytes {
            waiting.removeFirst()
            admitted += 1
            reservedBytes += next.reservedBytes
            next.state = .prefilling
            let job = next.active.job
            // Nothing to compute: max_tokens 0 without prompt scoring.
            if job.parameters.maxTokens == 0 && !next.scoresPrompt {
                finish(next, reason: "length")
                continue
            }
            next.cache = model.makeCache(maxTokens: next.limit)
            live.append(next)
        }
        if admitted > 0 { changeQueued(by: -admitted) }
    }

    /// One forward over every live sequence: a prompt chunk for those still reading, one token
    /// for those decoding.
    private func step() {
        var inputs: [ForwardInput] = []
        var members: [(EngineSequence, Int)] = []   // sequence, tokens fed this step
        var prefillBudget = max(1, options.prefillChunk)
        for s in live where s.state == .prefilling || s.state == .decoding {
            guard let cache = s.cache else { continue }
            if s.state == .prefilling {
                guard prefillBudget > 0 else { continue }
                // Scoring asks for every row's logits (vocab floats each): smaller chunks.
                let take = min(s.promptCount - s.fed, prefillBudget, s.scoresPrompt ? 64 : Int.max)
                prefillBudget -= take
                let end = s.fed + take
                let tokens = Array(s.active.prompt[s.fed..<end])
                let logits: LogitsRequest = s.scoresPrompt ? .all : (end == s.promptCount ? .last : .none)
                inputs.append(ForwardInput(cache: cache, tokens: tokens, logits: logits, variant: s.active.job.variant))
                members.append((s, take))
            } else if let token = s.pending {
                inputs.append(ForwardInput(cache: cache, tokens: [token], logits: .last, variant: s.active.job.variant))
                members.append((s, 1))
            }
        }
        guard !inputs.isEmpty else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let outputs: [[[Float]]]
        do {
            outputs = try model.forward(inputs)
        } catch {
            logger.error("engine step failed: \(error)")
            for (s, _) in members { fail(s) }
            live.removeAll { $0.state == .finished }
            return
        }
        let now = DispatchTime.now().uptimeNanoseconds
        metrics.stepSeconds.record(Double(now - t0) / 1e9)
        metrics.batchSize.record(Double(members.count))
        for ((s, count), rows) in zip(members, outputs) where s.state != .finished {
            if let variant = s.active.job.variant, !rows.allSatisfy({ $0.allSatisfy(\.isFinite) }) {
                quarantine(variant)
                continue
            }
            if s.state == .prefilling {
                if s.scoresPrompt { scorePrompt(s, rows: rows, count: count) }
                s.fed += count
                guard s.fed == s.promptCount else { continue }
                s.state = .decoding
                if s.scoresPrompt { sendPromptScores(s) }
                if s.active.job.parameters.maxTokens == 0 {
                    finish(s, reason: "length")
                    continue
                }
            }
            guard let logits = rows.last else { continue }
            s.pending = nil
            emitNext(s, logits: logits, now: now)
        }
        live.removeAll { $0.state == .finished }
    }

    /// Log-probs of prompt tokens from a chunk's rows: row j predicts the token after it.
    private func scorePrompt(_ s: EngineSequence, rows: [[Float]], count: Int) {
        if s.fed == 0 {
            s.promptLogprobs.append(nil)
            s.promptTop.append(nil)
        }
        let k = s.active.job.logprobs ?? 0
        for (j, row) in rows.enumerated() {
            let next = s.fed + j + 1
            guard next < s.promptCount else { break }
            let ls = logSoftmax(row)
            let token = s.active.prompt[next]
            s.promptLogprobs.append(ls[token])
            s.promptTop.append(topLogprobs(ls, k))
        }
    }

    private func sendPromptScores(_ s: EngineSequence) {
        let prompt = s.active.prompt
        let text = tokenizer?.decode(prompt, skipSpecialTokens: false) ?? ""
        let scores = PromptScores(text: text, tokens: prompt, strings: prompt.map(tokenString),
                                  logprobs: s.promptLogprobs, top: s.promptTop)
        send(s.active.job, .prompt(scores))
        s.promptLogprobs = []
        s.promptTop = []
    }

    /// Samples the next token from `logits` and reports it, or ends the sequence.
    private func emitNext(_ s: EngineSequence, logits: [Float], now: UInt64) {
        let job = s.active.job
        let token = s.sampler.sample(logits, history: s.history)
        if (!job.ignoreEOS && stopTokens.contains(token)) || job.parameters.stopTokens.contains(token) {
            finish(s, reason: "stop")
            return
        }
        s.generated.append(token)
        s.history.append(token)
        metrics.generationTokens.increment()
        if !s.active.firstTokenSeen {
            s.active.firstTokenSeen = true
            metrics.timeToFirstToken.record(Double(now &- job.submitted) / 1e9)
        } else if s.lastTokenTime > 0 {
            metrics.timePerToken.record(Double(now &- s.lastTokenTime) / 1e9)
        }
        s.lastTokenTime = now
        var logprob: Float?
        var top: [TokenLogprob] = []
        if let k = job.logprobs {
            let ls = logSoftmax(logits)
            logprob = ls[token]
            top = topLogprobs(ls, k)
        }
        let piece = s.decoder.map { d -> String in
            var d = d
            let text = d.push(token)
            s.decoder = d
            return text
        } ?? ""
        let visible = s.stops.push(piece)
        send(job, .tokens(choice: job.choiceBase + s.choice,
                          [GeneratedToken(id: token, token: tokenString(token), logprob: logprob, top: top)],
                          text: visible))
        if s.stops.stopped {
            finish(s, reason: "stop")
        } else if s.generated.count >= job.parameters.maxTokens || (s.cache?.count ?? 0) >= s.limit {
            finish(s, reason: "length")
        } else {
            s.pending = token
        }
    }

    /// Ends a sequence: flushes held-back text, reports the finish, releases its KV budget.
    private func finish(_ s: EngineSequence, reason: String) {
        var tail = ""
        if !s.stops.stopped {
            if var d = s.decoder {
                tail = s.stops.push(d.finish())
                s.decoder = d
            }
            tail += s.stops.finish()
        }
        let job = s.active.job
        send(job, .finished(choice: job.choiceBase + s.choice, reason: reason, text: tail))
        release(s)
    }

    /// Ends a sequence without flushing (cancelled or aborted).
    private func end(_ s: EngineSequence, reason: String) {
        let job = s.active.job
        send(job, .finished(choice: job.choiceBase + s.choice, reason: reason, text: ""))
        release(s)
    }

    private func fail(_ s: EngineSequence) {
        guard s.state != .finished else { return }
        let job = s.active.job
        s.active.remaining -= 1
        if s.state != .waiting { reservedBytes -= s.reservedBytes }
        s.state = .finished
        s.cache = nil
        send(job, .failed(.internal))
    }

    /// Ends every sequence on `variant` with an error: their KV caches were built with its
    /// weights, so they cannot move to base. New requests for it go to base (the server's side).
    private func quarantine(_ variant: Variant) {
        guard quarantined.insert(ObjectIdentifier(variant)).inserted else { return }
        logger.error("variant '\(variant.name)' produced non-finite logits: quarantined")
        onQuarantine?(variant)
        let error = APIError(status: 500, type: "server_error",
                             message: "The variant '\(variant.name)' produced non-finite logits and was quarantined; retry (new requests go to base).",
                             code: "variant_quarantined")
        var removedQueued = 0
        for s in waiting + live where s.active.job.variant === variant && s.state != .finished {
            if s.state == .waiting { removedQueued += 1 }
            let job = s.active.job
            s.active.remaining -= 1
            if s.state != .waiting { reservedBytes -= s.reservedBytes }
            s.state = .finished
            s.cache = nil
            send(job, .failed(error))
        }
        waiting.removeAll { $0.state == .finished }
        changeQueued(by: -removedQueued)
    }

    private func release(_ s: EngineSequence) {
        guard s.state != .finished else { return }
        if s.state != .waiting { reservedBytes -= s.reservedBytes }
        s.state = .finished
        s.cache = nil
        s.active.remaining -= 1
    }

    private func tokenString(_ id: Int) -> String {
        tokenizer?.decode([id], skipSpecialTokens: false) ?? "<\(id)>"
    }

    /// The k largest log-probs, ties to the lower id.
    private func topLogprobs(_ ls: [Float], _ k: Int) -> [TokenLogprob] {
        guard k > 0 else { return [] }
        var best: [(Int, Float)] = []
        best.reserveCapacity(k + 1)
        for (i, v) in ls.enumerated() {
            if best.count == k, let last = best.last, v <= last.1 { continue }
            var at = best.count
            while at > 0 && best[at - 1].1 < v { at -= 1 }
            best.insert((i, v), at: at)
            if best.count > k { best.removeLast() }
        }
        return best.map { TokenLogprob(id: $0.0, token: tokenString($0.0), logprob: $0.1) }
    }
}
