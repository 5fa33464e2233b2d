import Foundation

/// The three non-overlapping random subsets of PKT.md "Data splits and evaluation": extract (32),
/// align (80), train (1000; MBPP 300), drawn with a seed from each task's training pool.
///
/// - GSM8K: the 7,473 train items.
/// - MBPP: train + validation, tasks 511–974 (464).
/// - HumanEval: no offline training data (Evol-Instruct-Code is unreachable), so MBPP's pool
///   stands in as the Python instruction data: extract 32, align 80, train the remaining 352.
/// - MMLU: no training split offline, so the subsets are carved from the 14,042 test questions and
///   evaluation uses the remaining 12,930 (every report says so).
public struct SplitPlan: Sendable, Codable, Equatable {
    public var task: BenchmarkTask
    public var seed: UInt64
    public var source: String
    public var poolSize: Int
    public var extract: [String]
    public var align: [String]
    public var train: [String]
    public var note: String

    public static let extractSize = 32, alignSize = 80

    /// Draws the subsets from `pool` (item ids in file order): one seeded shuffle, then
    /// consecutive slices, so the three never overlap.
    public static func make(task: BenchmarkTask, pool: [String], seed: UInt64, source: String) -> SplitPlan {
        let trainSize: Int
        switch task {
        case .gsm8k, .mmlu: trainSize = 1000
        case .mbpp: trainSize = 300
        case .humaneval: trainSize = pool.count - extractSize - alignSize
        }
        precondition(pool.count >= extractSize + alignSize + trainSize, "pool too small for the splits")
        // Mix the task into the seed so that one --seed gives unrelated draws per task.
        let taskSeed = seed &+ UInt64(BenchmarkTask.allCases.firstIndex(of: task)!) &* 0x9E37_79B9
        let shuffled = pool.seededShuffle(seed: taskSeed)
        let e = Array(shuffled[0..<extractSize])
        let a = Array(shuffled[extractSize..<(extractSize + alignSize)])
        let t = Array(shuffled[(extractSize + alignSize)..<(extractSize + alignSize + trainSize)])
        let note: String
        switch task {
        case .mmlu: note = "carved from the MMLU test set (no training split offline); evaluation uses the \(pool.count - e.count - a.count - t.count) remaining test questions"
        case .humaneval: note = "MBPP train+validation tasks 511-974 stand in for Evol-Instruct-Code (unreachable offline)"
        case .mbpp: note = "MBPP train+validation tasks 511-974"
        case .gsm8k: note = "GSM8K train split"
        }
        return SplitPlan(task: task, seed: seed, source: source, poolSize: pool.count,
                         extract: e, align: a, train: t, note: note)
    }

    /// Every id in any subset (MMLU evaluation excludes them).
    public var carved: Set<String> { Set(extract).union(align).union(train) }

    enum CodingKeys: String, CodingKey {
        case task, seed, source, poolSize = "pool_size", extract, align, train, note
    }
}

extension DataStore {
    var extractAlignCount: Int { SplitPlan.extractSize + SplitPlan.alignSize }

    public func splitDirectory(_ task: BenchmarkTask) -> String { root + "/splits/" + task.rawValue }

    /// Makes (or re-reads, when present with the same seed) the split files of `task`:
    /// `manifest.json` (ids) and `extract.jsonl`, `align.jsonl`, `train.jsonl` with the records in
    /// their official format plus an `id` field.
    @discardableResult
    public func makeSplits(_ task: BenchmarkTask, seed: UInt64, force: Bool = false) throws(EvaluationError) -> SplitPlan {
        let dir = splitDirectory(task)
        if !force, let existing = try? loadSplits(task), existing.seed == seed { return existing }
        let records: [(String, [String: Any])]
        let source: String
        switch task {
        case .gsm8k:
            records = try gsm8kTrain().map { ($0.id, ["question": $0.question, "answer": $0.answer]) }
            source = path("gsm8k-train")
        case .mmlu:
            records = try mmluTest().map { m in
                (m.id, ["question": m.question, "answer_a": m.choices[0], "answer_b": m.choices[1],
                        "answer_c": m.choices[2], "answer_d": m.choices[3], "correct_answer": m.answerLetter,
                        "topic": m.subject])
            }
            source = path("mmlu")
        case .mbpp, .humaneval:
            records = try mbppAll().filter { (511...974).contains(BenchmarkReader.mbppNumber($0.id)) }.map { t in
                (t.id, ["task_id": BenchmarkReader.mbppNumber(t.id), "text": t.prompt, "code": t.canonicalSolution,
                        "test_list": t.testList, "test_setup_code": t.setup])
            }
            source = path("mbpp")
        }
        let needed = task == .humaneval ? extractAlignCount + 1 : extractAlignCount + (task == .mbpp ? 300 : 1000)
        guard records.count >= needed else {
            throw .data("\(task.rawValue): \(records.count) items in \(source), the splits need \(needed)")
        }
        let plan = SplitPlan.make(task: task, pool: records.map(\.0), seed: seed, source: source)
        try makeDirectory(dir)
        let byID = Dictionary(uniqueKeysWithValues: records)
        for (name, ids) in [("extract", plan.extract), ("align", plan.align), ("train", plan.train)] {
            var out = Data()
            for id in ids {
                var r = byID[id]!
                r["id"] = id
                out.append(try! JSONSerialization.data(withJSONObject: r, options: [.sortedKeys]))
                out.append(UInt8(ascii: "\n"))
            }
            try writeAtomically(out, to: "\(dir)/\(name).jsonl")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try! enc.encode(plan), to: dir + "/manifest.json")
        return plan
    }

    public func loadSplits(_ task: BenchmarkTask) throws(EvaluationError) -> SplitPlan {
        let file = splitDirectory(task) + "/manifest.json"
        guard let d = FileManager.default.contents(atPath: file) else {
            throw .data("no splits at \(file) (hint: run `graft data`)")
        }
        do { return try JSONDecoder().decode(SplitPlan.self, from: d) } catch { throw .data("\(file): \(error)") }
    }
}
