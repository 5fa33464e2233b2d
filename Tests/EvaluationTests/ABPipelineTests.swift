import Foundation
import Testing
@testable import Evaluation

/// The A/B pipeline end to end over HTTP against a deterministic stand-in for `graft serve`
/// (Tests/Fixtures/eval/mock_openai_server.py): interleaved arms, cache and resume, A/A zero,
/// wrong-variant refusal, reports.
final class MockServer: @unchecked Sendable {
    let process = Process()
    let url: String

    init() throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", evalFixtures + "/mock_openai_server.py", evalFixtures]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            line.append(d)
        }
        let port = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        url = "http://127.0.0.1:\(port)"
    }

    deinit { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
}

@Suite(.serialized) struct ABPipelineTests {
    let server: MockServer
    let store: DataStore
    init() throws {
        server = try MockServer()
        store = try fixtureStore()
    }

    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "graft-ab-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// The mock has no admin API: its variants are known by name only, cached by name here.
    func run(_ task: EvalTask, _ arms: [String], cache: ResultCache, report: String, seeds: [Int] = [0],
             cacheByName: Bool = true) throws -> [[ItemResult]] {
        let client = try OpenAIClient(server: server.url)
        let runner = ABRun(client: client, arms: try ABRun.resolveArms(arms, client: client, cacheByName: cacheByName), cache: cache,
                           seeds: seeds, workers: 2) { _ in }
        return try runner.run(task, items: try JSONLWriter(path: report + "/items.jsonl"))
    }

    @Test func gsm8kABWithReport() throws {
        let report = tempDir()
        let cache = try ResultCache(directory: report + "/cache")
        let task = try GSM8KTask(store: store, settings: EvalSettings())
        let results = try run(task, ["base", "good"], cache: cache, report: report)
        #expect(results[1].allSatisfy { $0.correct })
        #expect(results[0].map(\.item) == results[1].map(\.item), "same items in the same order")
        let baseCorrect = try store.gsm8kTest().map { $0.question.count % 2 == 0 }
        #expect(results[0].map(\.correct) == baseCorrect)
        #expect(results[1].allSatisfy { $0.strictCorrect == true })
        var s = [TaskSummary.make(task: task, results: results, settings: EvalSettings(), bootstrapSeed: 0, wallSeconds: 1)]
        Report.applyHolm(&s)
        let wrong = baseCorrect.filter { !$0 }.count
        #expect(s[0].onlyB.count == wrong && s[0].onlyA.isEmpty)
        #expect(abs(s[0].difference! - Double(wrong) / 3) < 1e-12)
        #expect(s[0].mcnemarP == Statistics.mcnemarExact(onlyA: 0, onlyB: wrong))
        let files = try Report.write(s, to: report, settings: ["server": server.url], provenance: [:])
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report + "/summary.json"))) as! [String: Any]
        let g = (summary["tasks"] as! [String: Any])["gsm8k"] as! [String: Any]
        #expect((g["a"] as! [String: Any])["n"] as? Int == 3)
        #expect(g["difference"] != nil && g["ci95"] != nil && g["mcnemar_p"] != nil)
        #expect(files.contains { $0.hasSuffix("summary.md") })
        if Subprocess.which("gnuplot") != nil {
            let png = try Data(contentsOf: URL(fileURLWithPath: report + "/accuracy.png"))
            #expect(png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
        }
        let lines = try String(contentsOfFile: report + "/items.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 6)
    }

    @Test func aaIsExactlyZeroAndCacheResumes() throws {
        let report = tempDir()
        let cache = try ResultCache(directory: report + "/cache")
        let task = try GSM8KTask(store: store, settings: EvalSettings())
        let aa = try run(task, ["base", "base"], cache: cache, report: report)
        let s = TaskSummary.make(task: task, results: aa, settings: EvalSettings(), bootstrapSeed: 0, wallSeconds: 0)
        #expect(s.difference == 0 && s.ci95! == (0, 0) && s.mcnemarP == 1 && s.onlyA.isEmpty && s.onlyB.isEmpty)
        #expect(aa[0].allSatisfy { $0.cached == nil }, "A/A asks the server for both arms")
        // A new B reuses A's cached answers; only B is asked.
        let fresh = try ResultCache(directory: report + "/cache")
        let ab = try run(task, ["base", "good"], cache: fresh, report: report)
        #expect(ab[0].allSatisfy { $0.cached == true } && ab[1].allSatisfy { $0.cached == nil })
        // Resume: a third run with everything cached asks nothing.
        let again = try run(task, ["base", "good"], cache: try ResultCache(directory: report + "/cache"), report: report)
        #expect(again.allSatisfy { $0.allSatisfy { $0.cached == true } })
        #expect(again[1].map(\.correct) == ab[1].map(\.correct))
    }

    /// Without admin access a variant is known by name only: its results are not cached unless
    /// asked, and the arm says why. A server without the admin routes falls back the same way.
    @Test func nameOnlyFingerprintsAreNotCachedUnlessAsked() throws {
        let report = tempDir()
        let task = try GSM8KTask(store: store, settings: EvalSettings())
        let arms = try ABRun.resolveArms(["base", "good"], client: try OpenAIClient(server: server.url))
        #expect(arms.allSatisfy { $0.fingerprintSource == "name" && !$0.cacheable })
        #expect(arms[1].note?.contains("not cached") == true, "\(arms[1].note ?? "")")
        let withToken = try ABRun.resolveArms(["good"], client: try OpenAIClient(server: server.url, adminToken: "t"))
        #expect(withToken[0].fingerprintSource == "name" && withToken[0].note?.contains("admin API did not answer") == true,
                "\(withToken[0].note ?? "")")
        let cacheDir = report + "/cache"
        _ = try run(task, ["base", "good"], cache: try ResultCache(directory: cacheDir), report: report, cacheByName: false)
        let again = try run(task, ["base", "good"], cache: try ResultCache(directory: cacheDir), report: report, cacheByName: false)
        #expect(again.allSatisfy { $0.allSatisfy { $0.cached == nil } }, "asked again, nothing from a cache")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: cacheDir)) ?? []
        #expect(files.isEmpty, "\(files)")
    }

    @Test func truncatedCacheLineIsIgnored() throws {
        let dir = tempDir()
        let cache = try ResultCache(directory: dir)
        let r = ItemResult(task: "gsm8k", item: "test/0", variant: "base", fingerprint: "fp", protocolID: "p", seed: 0,
                           correct: true, seconds: 0)
        cache.store(r)
        let file = cache.file(fingerprint: "fp", task: "gsm8k", protocolID: "p")
        let h = FileHandle(forWritingAtPath: file)!
        _ = try h.seekToEnd()
        h.write(Data("{\"task\": \"gsm8k\", \"item\": \"te".utf8))  // killed mid-write
        try h.close()
        let back = try ResultCache(directory: dir).results(fingerprint: "fp", task: "gsm8k", protocolID: "p")
        #expect(back.count == 1 && back["test/0#0"]?.correct == true)
    }

    @Test func wrongVariantIsAnErrorNeverAResult() throws {
        let report = tempDir()
        let task = try GSM8KTask(store: store, settings: EvalSettings())
        #expect {
            _ = try run(task, ["base", "evil"], cache: try ResultCache(directory: nil), report: report)
        } throws: { e in
            if case .wrongVariant(asked: "evil", servedBy: "base") = e as? EvaluationError { return true }
            return false
        }
        let cacheDir = report + "/cache"
        _ = try? run(task, ["evil"], cache: try ResultCache(directory: cacheDir), report: report)
        let cached = (try? FileManager.default.contentsOfDirectory(atPath: cacheDir)) ?? []
        let bytes = cached.compactMap { FileManager.default.contents(atPath: cacheDir + "/" + $0)?.count }.reduce(0, +)
        #expect(bytes == 0, "nothing from the wrong arm is stored")
    }

    @Test func unknownVariantIsRefusedUpFront() throws {
        let client = try OpenAIClient(server: server.url)
        #expect(throws: EvaluationError.self) { try ABRun.resolveArms(["nope"], client: client) }
    }

    @Test func mmluByPromptScoring() throws {
        var settings = EvalSettings()
        settings.mmluAllItems = true
        settings.chatTemplate = false
        let task = try MMLUTask(store: store, settings: settings, formatter: nil)
        let report = tempDir()
        let results = try run(task, ["base", "good"], cache: try ResultCache(directory: nil), report: report)
        #expect(results[1].allSatisfy { $0.correct })
        let gold = try store.mmluTest().map(\.answer)
        #expect(results[0].map(\.correct) == gold.map { $0 == 0 }, "base always picks A")
        let s = TaskSummary.make(task: task, results: results, settings: settings, bootstrapSeed: 0, wallSeconds: 0)
        #expect(s.b?.perSubject?.count == Set(try store.mmluTest().map(\.subject)).count)
        #expect(s.b?.macroAccuracy == 1)
    }

    /// MMLU takes the candidates it finds in one next-token request's top log-probs and echoes
    /// only the others (the mock lists " A" and " B": two echoes per item and arm).
    @Test func mmluEchoesOnlyCandidatesMissingFromTheTopLogprobs() throws {
        var settings = EvalSettings()
        settings.mmluAllItems = true
        settings.chatTemplate = false
        let task = try MMLUTask(store: store, settings: settings, formatter: nil)
        func echoes() throws -> Int {
            let stats = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(string: server.url + "/stats")!)) as? [String: Any]
            return stats?["echo"] as? Int ?? 0
        }
        let client = try OpenAIClient(server: server.url)
        let before = try echoes()
        let r = try task.evaluate(index: 0, model: "good", client: client, slot: 0, seed: 0)
        #expect(r.correct)
        #expect(try echoes() - before == 2)
        #expect(r.scores?.count == 4)
    }

    @Test func mmluChatPromptEndsWithTheAnswerPrefix() throws {
        struct Fake: ChatFormatter {
            func render(_ m: [Message], addGenerationPrompt: Bool) throws -> String {
                "<|user|>" + m[0].content + "<|assistant|>"
            }
        }
        var settings = EvalSettings()
        settings.mmluAllItems = true
        let task = try MMLUTask(store: store, settings: settings, formatter: Fake())
        let item = try store.mmluTest()[0]
        let ctx = try task.context(item)
        #expect(ctx.hasPrefix("<|user|>The following are multiple choice questions (with answers) about \(item.subject).\n\n"))
        #expect(ctx.hasSuffix("\nAnswer:<|assistant|>The answer is"))
        #expect(throws: EvaluationError.self) { try MMLUTask(store: store, settings: EvalSettings(), formatter: nil) }
    }

    @Test func candidateScoreCoversOnlyTheCandidate() throws {
        let s = OpenAIClient.PromptScores(tokens: ["The", " answer", " is", " B"], logprobs: [nil, -1, -2, -0.25], offsets: [0, 3, 10, 13])
        #expect(try MMLUScoring.candidateLogprob(s, candidate: " B") == -0.25)
        #expect(MMLUScoring.argmax([-1, -0.5, -0.5, -3]) == 1, "ties go to the earlier letter")
    }

    @Test func humanEvalCodePathInTheSandbox() throws {
        let sandbox = try Sandbox(allowWeaker: true)
        let task = try CodeEvalTask(task: .humaneval, store: store, settings: EvalSettings(), sandbox: sandbox)
        let report = tempDir()
        let results = try run(task, ["base", "good"], cache: try ResultCache(directory: nil), report: report)
        #expect(results[1].allSatisfy { $0.correct } && results[0].allSatisfy { !$0.correct })
        #expect(results[0].allSatisfy { $0.status == "failed" })
    }
}
