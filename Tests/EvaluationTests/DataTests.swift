import Foundation
import Testing
@testable import Evaluation

/// Readers of the official formats on verbatim fixture lines, answer extraction, and the splits.
@Suite struct DataTests {
    @Test func readsOfficialFormats() throws {
        let store = try fixtureStore()
        let he = try store.humanEval()  // gzip -dc
        #expect(he.map(\.id) == ["HumanEval/0", "HumanEval/1"])
        #expect(he[0].entryPoint == "has_close_elements" && he[0].test.contains("def check(candidate)"))
        let g = try store.gsm8kTest()
        #expect(g.count == 3 && g[0].id == "test/0")
        #expect(g.map { AnswerExtraction.gsm8kGold($0.answer) } == ["18", "3", "70000"])
        let m = try store.mmluTest()
        #expect(m.count == 3, "the stray header row is dropped")
        #expect(m.allSatisfy { $0.choices.count == 4 && (0..<4).contains($0.answer) })
        #expect(m.map(\.id) == ["test/0", "test/1", "test/2"])
        let mb = try store.mbppAll()
        #expect(mb.map(\.id) == ["mbpp/2", "mbpp/11", "mbpp/341", "mbpp/367"])
        #expect(mb[1].entryPoint == "remove_Occ")
        #expect(try store.mbppTest().map(\.id) == ["mbpp/11", "mbpp/341", "mbpp/367"])
    }

    @Test func malformedLinesAreErrors() throws {
        let dir = NSTemporaryDirectory() + "graft-eval-bad-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("{\"question\": \"q\", \"answer\": \"#### 1\"}\n{not json\n".utf8).write(to: URL(fileURLWithPath: dir + "/g.jsonl"))
        #expect(throws: EvaluationError.self) { try BenchmarkReader.gsm8k(path: dir + "/g.jsonl", split: "test") }
        try Data("{\"question\": \"q\"}\n".utf8).write(to: URL(fileURLWithPath: dir + "/h.jsonl"))
        #expect(throws: EvaluationError.self) { try BenchmarkReader.gsm8k(path: dir + "/h.jsonl", split: "test") }
        #expect(throws: EvaluationError.self) { try BenchmarkReader.mmlu(path: dir + "/missing.jsonl") }
    }

    @Test func checksumMismatchIsRefused() throws {
        let store = DataStore(root: NSTemporaryDirectory() + "graft-eval-sum-\(UUID().uuidString.prefix(6))")
        let fake = NSTemporaryDirectory() + "fake-mbpp-\(UUID().uuidString.prefix(6)).jsonl"
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: fake))
        #expect(throws: EvaluationError.self) {
            try store.fetch(shared: "/nonexistent", overrides: ["mbpp": fake], only: ["mbpp"])
        }
        // Accepted only when asked, and then said.
        let store2 = DataStore(root: NSTemporaryDirectory() + "graft-eval-sum-\(UUID().uuidString.prefix(6))")
        let r = try store2.fetch(shared: "/nonexistent", overrides: ["mbpp": fake], only: ["mbpp"], allowMismatch: true)
        #expect(r[0].action.contains("differs from the pinned"))
    }

    @Test(arguments: [
        ("The answer is 42.", "42"), ("so 1,000 apples", "1000"), ("$18.00 total", "18"), ("-3 degrees", "-3"),
        ("first 5 then 7.5", "7.5"), ("no numbers", nil), ("#### 72\n", "72"), ("0.50", "0.5"),
    ] as [(String, String?)])
    func lastNumber(text: String, want: String?) {
        #expect(AnswerExtraction.lastNumber(text) == want)
    }

    @Test func strictHashes() {
        #expect(AnswerExtraction.strictHashes("blah\n#### 1,234") == "1234")
        #expect(AnswerExtraction.strictHashes("The answer is 5") == nil)
        #expect(AnswerExtraction.gsm8kGold("work\n#### -7") == "-7")
    }

    @Test func codeExtraction() {
        let reply = "Sure:\n```python\ndef f(x):\n    return x\n```\nAnd a test:\n```\nprint(f(1))\n```"
        #expect(AnswerExtraction.code(fromReply: reply) == "def f(x):\n    return x")
        #expect(AnswerExtraction.code(fromReply: "def g(): pass") == "def g(): pass")
        #expect(AnswerExtraction.code(fromReply: "```python\ndef h():\n    return 1") == "def h():\n    return 1")
        let task = CodeTask(id: "t", prompt: "import math\n\ndef f(x):\n    \"\"\"doc\"\"\"\n", entryPoint: "f",
                            canonicalSolution: "", test: "", setup: "", testList: [])
        #expect(AnswerExtraction.humanEvalProgram(task: task, reply: "```python\ndef f(x):\n    return 2\n```")
                == "import math\n\n\ndef f(x):\n    return 2")
        #expect(AnswerExtraction.humanEvalProgram(task: task, reply: "    return 3\n") == task.prompt + "    return 3\n")
    }

    @Test func splitsAreSeededAndDisjoint() {
        let pool = (0..<7473).map { "train/\($0)" }
        let a = SplitPlan.make(task: .gsm8k, pool: pool, seed: 0, source: "x")
        let b = SplitPlan.make(task: .gsm8k, pool: pool, seed: 0, source: "x")
        let c = SplitPlan.make(task: .gsm8k, pool: pool, seed: 1, source: "x")
        #expect(a == b)
        #expect(a.extract != c.extract)
        #expect((a.extract.count, a.align.count, a.train.count) == (32, 80, 1000))
        #expect(a.carved.count == 1112)
        let mb = SplitPlan.make(task: .mbpp, pool: (511...974).map { "mbpp/\($0)" }, seed: 0, source: "x")
        #expect((mb.extract.count, mb.align.count, mb.train.count) == (32, 80, 300) && mb.carved.count == 412)
        let he = SplitPlan.make(task: .humaneval, pool: (511...974).map { "mbpp/\($0)" }, seed: 0, source: "x")
        #expect(he.train.count == 352 && he.carved.count == 464)
    }

    @Test func realSplitFilesWhenDataPresent() throws {
        guard let store = realStore else {
            print("skipped: benchmark data not fetched (run tools/fetch_eval_data)")
            return
        }
        let tmp = DataStore(root: NSTemporaryDirectory() + "graft-eval-splits-\(UUID().uuidString.prefix(6))")
        for name in ["mmlu", "mbpp"] {
            let to = tmp.path(name)
            try FileManager.default.createDirectory(atPath: (to as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: store.path(name), toPath: to)
        }
        let plan = try tmp.makeSplits(.mmlu, seed: 0)
        #expect(plan.poolSize == 14042 && plan.carved.count == 1112)
        let lines = try String(contentsOfFile: tmp.splitDirectory(.mmlu) + "/train.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1000)
        #expect(try tmp.loadSplits(.mmlu) == plan)
        let mb = try tmp.makeSplits(.mbpp, seed: 0)
        #expect(mb.carved.allSatisfy { (511...974).contains(BenchmarkReader.mbppNumber($0)) })
    }
}
