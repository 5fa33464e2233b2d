import Foundation
import Testing
@testable import Evaluation

/// Reference checks on the real benchmark files (fetched by tools/fetch_eval_data; skipped with a
/// message when absent). The full code checks run as `tools/check_eval_references` (HumanEval
/// 164/164 and MBPP in the sandbox take about a minute on 2 cores); here a slice of each.
@Suite struct ReferenceTests {
    @Test func gsm8kGoldParsesForAll1319() throws {
        guard let store = realStore else { print("skipped: benchmark data not fetched (run tools/fetch_eval_data)"); return }
        let r = try ReferenceCheck.run(task: .gsm8k, store: store, sandbox: nil)
        #expect(r.passed == 1319 && r.total == 1319, "\(r.failures.prefix(5))")
    }

    @Test func mmluGoldLettersForAll14042() throws {
        guard let store = realStore else { print("skipped: benchmark data not fetched (run tools/fetch_eval_data)"); return }
        let r = try ReferenceCheck.run(task: .mmlu, store: store, sandbox: nil)
        #expect(r.passed == 14042 && r.total == 14042)
        #expect(Set(try store.mmluTest().map(\.subject)).count == 57)
    }

    @Test func canonicalSolutionsPassInTheSandbox() throws {
        guard let store = realStore else { print("skipped: benchmark data not fetched (run tools/fetch_eval_data)"); return }
        let sandbox = try Sandbox(allowWeaker: !bubblewrapAvailable)
        let he = Array(try store.humanEval().prefix(24))
        let mb = try store.mbppTest().filter { ["mbpp/11", "mbpp/12", "mbpp/367", "mbpp/341", "mbpp/500"].contains($0.id) }
        let jobs = he.map { ($0, BenchmarkTask.humaneval) } + mb.map { ($0, BenchmarkTask.mbpp) }
        let verdicts = parallelMap(jobs.count, workers: 2) { i, slot in
            CodeExecution.check(task: jobs[i].0, kind: jobs[i].1,
                                program: CodeExecution.reference(task: jobs[i].0, kind: jobs[i].1), sandbox: sandbox, slot: 10 + slot)
        }
        for (j, v) in zip(jobs, verdicts) {
            let knownBad = ReferenceCheck.knownBadMBPP[j.0.id] != nil
            #expect(v.passed != knownBad, "\(j.0.id): \(v.status) \(v.detail)")
        }
    }
}
