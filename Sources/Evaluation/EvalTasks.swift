import Foundation

/// Settings that define a protocol (and so enter the cache key) plus run options.
public struct EvalSettings: Sendable, Codable {
    /// Few-shot examples (GSM8K only; 0 = the paper's zero-shot).
    public var shots = 0
    public var maxTokens = 512
    public var seed = 0
    /// Samples per code task for pass@k (1 = greedy pass@1 only).
    public var samples = 1
    public var passAtK: [Int] = [1]
    /// Sampling temperature when samples > 1 (Chen et al. use 0.8 for pass@100; 0.2 for pass@1).
    public var sampleTemperature = 0.8
    public var limit: Int?
    /// MMLU: at most this many questions per subject (a stratified, seeded subset).
    public var perSubject: Int?
    /// MMLU: evaluate every test question instead of the remainder after carving the PKT splits.
    public var mmluAllItems = false
    public var splitSeed: UInt64 = 0
    public var chatTemplate = true
    public init() {}
}

/// The outcome of one item for one variant, one line of `items.jsonl` and of the cache.
public struct ItemResult: Sendable, Codable, Equatable {
    public var task: String
    public var item: String
    public var variant: String
    public var fingerprint: String
    public var protocolID: String
    public var seed: Int
    public var correct: Bool
    /// GSM8K's strict `#### N` rule.
    public var strictCorrect: Bool?
    public var prediction: String?
    public var gold: String?
    /// MMLU subject.
    public var subject: String?
    /// MMLU: the four candidates' log-probabilities.
    public var scores: [Double]?
    /// Code: pass/fail of each sample (samples > 1), for pass@k.
    public var samplePasses: [Bool]?
    public var status: String?
    public var response: String?
    public var seconds: Double
    public var cached: Bool?

    enum CodingKeys: String, CodingKey {
        case task, item, variant, fingerprint, protocolID = "protocol", seed, correct, strictCorrect = "strict_correct"
        case prediction, gold, subject, scores, samplePasses = "sample_passes", status, response, seconds, cached
    }
}

/// One benchmark prepared for a run: its items and how to score one against a variant.
public protocol EvalTask: Sendable {
    var task: BenchmarkTask { get }
    /// Names the prompt, extraction and decoding; part of the cache key.
    var protocolID: String { get }
    var itemIDs: [String] { get }
    /// Where the items came from (for the report).
    var itemNote: String { get }
    func evaluate(index: Int, model: String, client: OpenAIClient, slot: Int, seed: Int) throws(EvaluationError) -> ItemResult
}

extension EvalTask {
    func result(_ index: Int, model: String, seed: Int, correct: Bool) -> ItemResult {
        ItemResult(task: task.rawValue, item: itemIDs[index], variant: model, fingerprint: "", protocolID: protocolID,
                   seed: seed, correct: correct, seconds: 0)
    }
}

/// `--limit N` keeps the first N items in file order, so that a limited run is a prefix of the
/// full one and shares its cache.
func limited<T>(_ items: [T], _ limit: Int?) -> [T] {
    guard let limit, limit < items.count else { return items }
    return Array(items.prefix(limit))
}

public struct GSM8KTask: EvalTask {
    public let task = BenchmarkTask.gsm8k
    let items: [GSM8KItem]
    let shots: [GSM8KItem]
    let settings: EvalSettings
    public let protocolID: String
    public var itemIDs: [String] { items.map(\.id) }
    public var itemNote: String { "GSM8K test (\(items.count) of 1,319 items, file order)" }

    public init(store: DataStore, settings: EvalSettings) throws(EvaluationError) {
        items = limited(try store.gsm8kTest(), settings.limit)
        // Few-shot examples: seeded draw from train items outside the PKT splits.
        if settings.shots > 0 {
            let carved = (try? store.loadSplits(.gsm8k))?.carved ?? []
            let pool = try store.gsm8kTrain().filter { !carved.contains($0.id) }
            shots = Array(pool.seededShuffle(seed: UInt64(settings.seed)).prefix(settings.shots))
        } else { shots = [] }
        self.settings = settings
        protocolID = "gsm8k/\(Prompts.gsm8kVersion)/chat/\(settings.shots)shot-s\(settings.shots > 0 ? settings.seed : 0)/greedy/max\(settings.maxTokens)"
    }

    public func evaluate(index: Int, model: String, client: OpenAIClient, slot: Int, seed: Int) throws(EvaluationError) -> ItemResult {
        let item = items[index]
        let start = Date()
        let g = try client.chat(model: model, messages: Prompts.gsm8k(item, shots: shots), maxTokens: settings.maxTokens,
                                temperature: 0, seed: seed)
        let gold = AnswerExtraction.gsm8kGold(item.answer)
        let pred = AnswerExtraction.lastNumber(g.text)
        var r = result(index, model: model, seed: seed, correct: pred != nil && pred == gold)
        r.strictCorrect = AnswerExtraction.strictHashes(g.text).map { $0 == gold } ?? false
        r.prediction = pred
        r.gold = gold
        r.response = g.text
        r.status = g.finishReason
        r.seconds = Date().timeIntervalSince(start)
        return r
    }
}

/// MMLU by log-likelihood: the four candidates' log-probabilities through prompt scoring.
public struct MMLUScoring {
    /// Index of the largest score; ties go to the earliest letter.
    public static func argmax(_ s: [Double]) -> Int {
        var best = 0
        for i in s.indices where s[i] > s[best] { best = i }
        return best
    }

    /// Sum of the log-probs of the prompt's trailing tokens that spell `candidate` (" A": one
    /// token in byte-level BPE vocabularies). Walks back from the end until the tokens cover the
    /// candidate's characters, so it needs no character offsets (servers count them differently);
    /// a token that straddles the boundary counts whole.
    public static func candidateLogprob(_ s: OpenAIClient.PromptScores, candidate: String) throws(EvaluationError) -> Double {
        var total = 0.0, covered = 0, i = s.tokens.count - 1
        let need = candidate.unicodeScalars.count
        while covered < need && i >= 0 {
            guard let lp = s.logprobs[i] else { throw .server("prompt scoring returned no log-prob for a candidate token") }
            total += lp
            covered += s.tokens[i].unicodeScalars.count
            i -= 1
        }
        guard covered >= need else { throw .server("prompt scoring returned too few tokens (echo not honoured?)") }
        return total
    }
}

public struct MMLUTask: EvalTask {
    public let task = BenchmarkTask.mmlu
    let items: [MMLUItem]
    let formatter: ChatFormatter?
    public let protocolID: String
    public let itemNote: String
    public var itemIDs: [String] { items.map(\.id) }
    public func subject(_ index: Int) -> String { items[index].subject }

    public init(store: DataStore, settings: EvalSettings, formatter: ChatFormatter?) throws(EvaluationError) {
        if settings.chatTemplate && formatter == nil {
            throw .usage("MMLU scores chat-formatted prompts: pass --model-dir DIR (the served model's folder, for its chat template) or --no-chat-template")
        }
        var all = try store.mmluTest()
        var note = "MMLU test, all 14,042 questions"
        if !settings.mmluAllItems {
            let plan = try store.makeSplits(.mmlu, seed: settings.splitSeed)
            let carved = plan.carved
            all = all.filter { !carved.contains($0.id) }
            note = "MMLU test minus the \(carved.count) questions carved for extract/align/train (split seed \(settings.splitSeed)): \(all.count) questions"
        }
        if let k = settings.perSubject {
            // Stratified: a seeded draw of k per subject, kept in file order.
            var bySubject: [String: [Int]] = [:]
            for (i, m) in all.enumerated() { bySubject[m.subject, default: []].append(i) }
            var keep = Set<Int>()
            for (subject, idx) in bySubject {
                let seed = UInt64(settings.seed) &+ UInt64(truncatingIfNeeded: subject.unicodeScalars.reduce(0) { $0 &* 31 &+ Int($1.value) })
                keep.formUnion(idx.seededShuffle(seed: seed).prefix(k))
            }
            all = all.enumerated().filter { keep.contains($0.offset) }.map(\.element)
            note += "; stratified subset of \(k) per subject (seed \(settings.seed)): \(all.count)"
        }
        items = limited(all, settings.limit)
        if settings.limit != nil { note += "; first \(items.count)" }
        itemNote = note
        self.formatter = settings.chatTemplate ? formatter : nil
        protocolID = "mmlu/\(Prompts.version)/\(settings.chatTemplate ? "chat+\"\(Prompts.mmluAnswerPrefix)\"" : "raw")/0shot/loglik-space-letter"
    }

    /// The text the candidates continue.
    public func context(_ item: MMLUItem) throws(EvaluationError) -> String {
        let user = Prompts.mmluUser(item)
        guard let formatter else { return user }
        do {
            return try formatter.render([Message(role: "user", content: user)], addGenerationPrompt: true) + Prompts.mmluAnswerPrefix
        } catch { throw .usage("chat template failed: \(error)") }
    }

    public func evaluate(index: Int, model: String, client: OpenAIClient, slot: Int, seed: Int) throws(EvaluationError) -> ItemResult {
        let item = items[index]
        let start = Date()
        let ctx = try context(item)
        // Each candidate is one token after the context: its log-prob is in the next-token
        // distribution of one request (the same logits row and log-softmax as an echo of
        // context + candidate, so the same number; tested against graft serve). A candidate
        // missing from the top-20 is scored by echo, and so is every candidate when the server
        // refuses the request (e.g. a cap below 20 log-probs; the echo path reports real errors).
        let top = (try? client.nextTokenLogprobs(model: model, prompt: ctx)) ?? [:]
        var scores: [Double] = []
        for c in Prompts.mmluCandidates {
            if let v = top[c] { scores.append(v); continue }
            let s = try client.score(model: model, prompt: ctx + c)
            scores.append(try MMLUScoring.candidateLogprob(s, candidate: c))
        }
        let pick = MMLUScoring.argmax(scores)
        var r = result(index, model: model, seed: seed, correct: pick == item.answer)
        r.prediction = ["A", "B", "C", "D"][pick]
        r.gold = item.answerLetter
        r.subject = item.subject
        r.scores = scores
        r.seconds = Date().timeIntervalSince(start)
        return r
    }
}

public struct CodeEvalTask: EvalTask {
    public let task: BenchmarkTask
    let items: [CodeTask]
    let settings: EvalSettings
    let sandbox: Sandbox
    public let protocolID: String
    public let itemNote: String
    public var itemIDs: [String] { items.map(\.id) }

    public init(task: BenchmarkTask, store: DataStore, settings: EvalSettings, sandbox: Sandbox) throws(EvaluationError) {
        self.task = task
        let all = task == .humaneval ? try store.humanEval() : try store.mbppTest()
        items = limited(all, settings.limit)
        itemNote = task == .humaneval ? "HumanEval, \(items.count) of 164 tasks" : "MBPP test split (tasks 11-510), \(items.count) of 500"
        self.settings = settings
        self.sandbox = sandbox
        let sampling = settings.samples > 1 ? "+\(settings.samples)samples-t\(settings.sampleTemperature)" : ""
        protocolID = "\(task.rawValue)/\(Prompts.version)/chat/0shot/greedy\(sampling)/max\(settings.maxTokens)"
    }

    func program(_ t: CodeTask, reply: String) -> String {
        task == .humaneval ? AnswerExtraction.humanEvalProgram(task: t, reply: reply) : AnswerExtraction.code(fromReply: reply)
    }

    public func evaluate(index: Int, model: String, client: OpenAIClient, slot: Int, seed: Int) throws(EvaluationError) -> ItemResult {
        let t = items[index]
        let start = Date()
        let messages = task == .humaneval ? Prompts.humanEval(t) : Prompts.mbpp(t)
        let g = try client.chat(model: model, messages: messages, maxTokens: settings.maxTokens, temperature: 0, seed: seed)
        let v = CodeExecution.check(task: t, kind: task, program: program(t, reply: g.text), sandbox: sandbox, slot: slot)
        var r = result(index, model: model, seed: seed, correct: v.passed)
        r.status = v.status
        r.response = g.text
        r.prediction = v.passed ? nil : String(v.detail.suffix(200))
        if settings.samples > 1 {
            var passes: [Bool] = []
            for s in 0..<settings.samples {
                let gs = try client.chat(model: model, messages: messages, maxTokens: settings.maxTokens,
                                         temperature: settings.sampleTemperature, topP: 0.95, seed: seed &* 1000 &+ s)
                passes.append(CodeExecution.check(task: t, kind: task, program: program(t, reply: gs.text), sandbox: sandbox, slot: slot).passed)
            }
            r.samplePasses = passes
        }
        r.seconds = Date().timeIntervalSince(start)
        return r
    }
}
