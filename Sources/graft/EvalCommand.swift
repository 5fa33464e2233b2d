import ArgumentParser
import Evaluation
import Foundation
import Tokenizers

/// `graft eval`: A/B evaluation of two served variants on the same items with paired statistics,
/// or (`--references`) a self-check that scores the gold answers and canonical solutions.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate variants of a running server on MMLU, GSM8K, HumanEval, MBPP (paired A/B statistics).",
        discussion: """
        graft eval --server http://127.0.0.1:8080 --a base --b NAME --task gsm8k --report out/ab
        graft eval --task humaneval --references     (prints passed/total on its last line)
        Several tasks (--task gsm8k,mmlu) make one table with a Holm correction. Results are cached \
        by (variant fingerprint, task, protocol, item, seed) and stream to disk: run the same \
        command again to resume an interrupted run. With the admin token a variant's fingerprint \
        is its content's (a variant replaced under the same name gets fresh answers); without \
        it, a variant is known only by name and its results are not cached (--cache-by-name).
        """)

    @Option(help: "Tasks, comma-separated: mmlu, gsm8k, humaneval, mbpp.") var task: String
    @Flag(help: "Score the gold answers / canonical solutions instead of a model.") var references = false
    @Option(help: "Server URL.") var server = "http://127.0.0.1:8080"
    @Option(help: "Variant A (the server's model id).") var a = "base"
    @Option(help: "Variant B (omit for a single-variant run).") var b: String?
    @Option(help: "Only the first N items of each task.") var limit: Int?
    @Option(help: "MMLU: a stratified subset of K questions per subject.") var perSubject: Int?
    @Flag(help: "MMLU: all 14,042 questions, not the remainder after carving the PKT splits.") var mmluAll = false
    @Option(help: "GSM8K few-shot examples (default 0: zero-shot as in the paper).") var shots = 0
    @Option(help: "Largest reply, tokens.") var maxTokens = 512
    @Option(help: "Seeds, comma-separated; each seed is a full pass, pooled in one table.") var seeds = "0"
    @Option(help: "Code tasks: samples per task for pass@k (temperature --temperature).") var samples = 1
    @Option(help: "Code tasks: k values for pass@k, comma-separated.") var passAtK = "1"
    @Option(help: "Sampling temperature for --samples > 1.") var temperature = 0.8
    @Option(help: "Split seed (which MMLU questions are carved out).") var splitSeed: UInt64 = 0
    @Option(help: "Served model's folder, for its chat template (MMLU prompt scoring).") var modelDir: String?
    @Flag(help: "MMLU: score the raw Hendrycks prompt, no chat template.") var noChatTemplate = false
    @Option(help: "Report directory (default out/eval-<time>).") var report: String?
    @Option(help: "Result cache (default $GRAFT_CACHE/eval-results or ~/.cache/graft/eval-results).") var cache: String?
    @Flag(help: "Ask the server for every item.") var noCache = false
    @Option(help: "Concurrent items (each one A then B).") var concurrency = 2
    @Option(help: "Benchmark data folder (see graft data).") var dataDir: String?
    @Option(help: "Python for code tasks.") var python = "python3"
    @Flag(help: "Run code tasks with rlimits only when bubblewrap is missing (no namespaces: weaker).") var allowWeakSandbox = false
    @Option(help: "Sandbox wall-clock limit per program, seconds.") var timeout = 20.0
    @Option(help: "File with the server's admin token (default: $GRAFT_ADMIN_TOKEN): variants are then fingerprinted by their content (GET /v1/variants/{name}), base by the model's fingerprint.") var adminTokenFile: String?
    @Flag(help: "Without admin access, still cache results under a fingerprint of the variant's name (a variant replaced under the same name then reuses stale answers).") var cacheByName = false

    func run() throws {
        let tasks = try task.split(separator: ",").map { (t: Substring) throws -> BenchmarkTask in
            guard let k = BenchmarkTask(rawValue: String(t)) else { throw ValidationError("unknown task '\(t)' (mmlu, gsm8k, humaneval, mbpp)") }
            return k
        }
        let store = DataStore(root: dataDir)
        let missing = store.missing(tasks.flatMap { references ? referenceFiles($0) : DataStore.files(for: $0) })
        guard missing.isEmpty else {
            throw ValidationError("benchmark files missing: \(missing.joined(separator: ", ")) in \(store.root) (hint: run `graft data`)")
        }
        var limits = Sandbox.Limits()
        limits.wallSeconds = timeout
        let needsSandbox = tasks.contains { $0.isCode }
        let sandbox = needsSandbox ? try Sandbox(python: python, limits: limits, allowWeaker: allowWeakSandbox) : nil
        if let sandbox { FileHandle.standardError.write(Data("sandbox: \(sandbox.description)\n".utf8)) }
        if references { return try runReferences(tasks, store: store, sandbox: sandbox) }

        var settings = EvalSettings()
        settings.shots = shots
        settings.maxTokens = maxTokens
        settings.samples = samples
        settings.passAtK = passAtK.split(separator: ",").compactMap { Int($0) }
        settings.sampleTemperature = temperature
        settings.limit = limit
        settings.perSubject = perSubject
        settings.mmluAllItems = mmluAll
        settings.splitSeed = splitSeed
        settings.chatTemplate = !noChatTemplate
        let seedList = seeds.split(separator: ",").compactMap { Int($0) }
        guard !seedList.isEmpty else { throw ValidationError("--seeds needs integers") }
        settings.seed = seedList[0]

        var token = ProcessInfo.processInfo.environment["GRAFT_ADMIN_TOKEN"]
        if let adminTokenFile {
            do { token = try String(contentsOfFile: adminTokenFile, encoding: .utf8) } catch {
                throw ValidationError("cannot read --admin-token-file \(adminTokenFile): \(error.localizedDescription)")
            }
        }
        token = token?.trimmingCharacters(in: .whitespacesAndNewlines)
        if token?.isEmpty == true { token = nil }
        let client = try OpenAIClient(server: server, adminToken: token)
        let names = [a] + (b.map { [$0] } ?? [])
        let arms = try ABRun.resolveArms(names, client: client, cacheByName: cacheByName)
        for note in arms.compactMap(\.note) { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        let formatter: ChatFormatter? = try modelDir.map { try TemplateFormatter(directory: $0) }
        let reportDir = report ?? "out/eval-" + ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        try FileManager.default.createDirectory(atPath: reportDir, withIntermediateDirectories: true)
        let env = ProcessInfo.processInfo.environment
        let cacheDir = noCache ? nil : (cache ?? ((env["GRAFT_CACHE"] ?? (env["HOME"] ?? "/tmp") + "/.cache/graft") + "/eval-results"))
        let resultCache = try ResultCache(directory: cacheDir)
        let items = try JSONLWriter(path: reportDir + "/items.jsonl")
        let runner = ABRun(client: client, arms: arms, cache: resultCache, seeds: seedList, workers: concurrency) {
            FileHandle.standardError.write(Data(($0 + "\n").utf8))
        }
        let started = Date()
        var summaries: [TaskSummary] = []
        for t in tasks {
            let evalTask: EvalTask
            switch t {
            case .gsm8k: evalTask = try GSM8KTask(store: store, settings: settings)
            case .mmlu: evalTask = try MMLUTask(store: store, settings: settings, formatter: formatter)
            case .humaneval, .mbpp: evalTask = try CodeEvalTask(task: t, store: store, settings: settings, sandbox: sandbox!)
            }
            let t0 = Date()
            let results = try runner.run(evalTask, items: items)
            summaries.append(TaskSummary.make(task: evalTask, results: results, settings: settings,
                                              bootstrapSeed: UInt64(settings.seed), wallSeconds: Date().timeIntervalSince(t0)))
        }
        Report.applyHolm(&summaries)
        // A variant replaced while the run went on: its results mix two variants.
        var notes = arms.compactMap(\.note)
        if let after = try? ABRun.resolveArms(names, client: client, cacheByName: cacheByName) {
            for (before, now) in zip(arms, after) where before.fingerprint != now.fingerprint {
                let note = "'\(before.name)' changed during the run (fingerprint \(before.fingerprint) → \(now.fingerprint)): its results may mix two variants"
                FileHandle.standardError.write(Data("warning: \(note)\n".utf8))
                notes.append(note)
            }
        }
        var settingsJSON: [String: Any] = [
            "server": server, "tasks": tasks.map(\.rawValue), "seeds": seedList, "limit": limit as Any,
            "per_subject": perSubject as Any, "mmlu_all": mmluAll, "shots": shots, "max_tokens": maxTokens,
            "decoding": "greedy (temperature 0)", "samples": samples, "pass_at_k": settings.passAtK,
            "sample_temperature": temperature, "split_seed": splitSeed, "chat_template": !noChatTemplate,
            "mmlu_answer_prefix": Prompts.mmluAnswerPrefix, "mmlu_candidates": Prompts.mmluCandidates,
            "bootstrap": "paired percentile, 10000 resamples, seed \(settings.seed)", "interval": "Wilson 95%",
            "multiple_comparisons": "Holm across tasks", "concurrency": concurrency, "cache": cacheDir ?? "off",
            "started": ISO8601DateFormatter().string(from: started), "wall_seconds": Date().timeIntervalSince(started),
            "command": CommandLine.arguments.joined(separator: " "),
        ]
        if let sandbox { settingsJSON["sandbox"] = sandbox.description; settingsJSON["sandbox_isolation"] = sandbox.isolation.rawValue }
        if !notes.isEmpty { settingsJSON["notes"] = notes }
        var provenance: [String: Any] = [:]
        for (label, arm) in zip(["a", "b"], arms) {
            var p: [String: Any] = ["variant": arm.name, "fingerprint": arm.fingerprint, "fingerprint_source": arm.fingerprintSource,
                                    "cache_enabled": arm.cacheable && cacheDir != nil,
                                    "server": (try? JSONSerialization.jsonObject(with: Data(arm.provenance.utf8))) ?? arm.provenance]
            if let note = arm.note { p["note"] = note }
            provenance[label] = p
        }
        let files = try Report.write(summaries, to: reportDir, settings: settingsJSON, provenance: provenance)
        print(Report.markdown(summaries, settings: settingsJSON, plotNote: nil).components(separatedBy: "\n## ").first ?? "")
        print("report: " + (files + [reportDir + "/items.jsonl"]).joined(separator: ", "))
    }

    func referenceFiles(_ t: BenchmarkTask) -> [String] {
        switch t {
        case .mmlu: return ["mmlu"]
        case .gsm8k: return ["gsm8k-test"]
        case .humaneval: return ["humaneval"]
        case .mbpp: return ["mbpp"]
        }
    }

    func runReferences(_ tasks: [BenchmarkTask], store: DataStore, sandbox: Sandbox?) throws {
        var passed = 0, total = 0, unexpected = false
        for t in tasks {
            let r = try ReferenceCheck.run(task: t, store: store, sandbox: sandbox, workers: max(1, concurrency))
            for n in r.notes { print("\(t.rawValue): \(n)") }
            for f in r.failures.prefix(50) { print("\(t.rawValue): FAIL \(f.id): \(f.why)") }
            print(String(format: "\(t.rawValue): %d/%d in %.1f s", r.passed, r.total, r.seconds))
            passed += r.passed
            total += r.total
            if !ReferenceCheck.onlyKnownBad(r) { unexpected = true }
        }
        print("\(passed)/\(total)")
        // Known-bad upstream items (listed above) do not fail the check; anything else does.
        if unexpected { throw ExitCode(1) }
    }
}

/// The served model's chat template, rendered as transformers' apply_chat_template does.
struct TemplateFormatter: ChatFormatter {
    let template: ChatTemplate

    init(directory: String) throws {
        template = try Tokenizer(directory: directory).makeChatTemplate()
    }

    func render(_ messages: [Message], addGenerationPrompt: Bool) throws -> String {
        try template.render(messages: messages.map { ChatMessage(role: $0.role, content: $0.content) },
                            addGenerationPrompt: addGenerationPrompt)
    }
}
