import Foundation
@testable import Evaluation

/// Tests/Fixtures/eval, found from this file's path.
let evalFixtures: String = {
    var url = URL(fileURLWithPath: #filePath)
    url.deleteLastPathComponent()
    url.deleteLastPathComponent()
    return url.appendingPathComponent("Fixtures/eval").path
}()

func fixtureJSON(_ name: String) throws -> [String: Any] {
    let d = try Data(contentsOf: URL(fileURLWithPath: evalFixtures + "/" + name))
    return try JSONSerialization.jsonObject(with: d) as! [String: Any]
}

/// A DataStore over a fresh temporary folder holding the small fixture files in the store's layout.
func fixtureStore() throws -> DataStore {
    let root = NSTemporaryDirectory() + "graft-eval-test-\(UUID().uuidString.prefix(8))"
    let fm = FileManager.default
    for (src, dst) in [("HumanEval-2.jsonl.gz", "humaneval/HumanEval.jsonl.gz"), ("gsm8k-3.jsonl", "gsm8k/test.jsonl"),
                       ("mmlu-4.jsonl", "mmlu/mmlu.jsonl"), ("mbpp-4.jsonl", "mbpp/mbpp.jsonl")] {
        let to = root + "/" + dst
        try fm.createDirectory(atPath: (to as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try fm.copyItem(atPath: evalFixtures + "/" + src, toPath: to)
    }
    return DataStore(root: root)
}

/// The real benchmark files fetched by `graft data` / tools/fetch_eval_data, or nil (tests that
/// need them are skipped with a message).
let realStore: DataStore? = {
    let s = DataStore()
    return s.missing(["humaneval", "gsm8k-test", "mmlu", "mbpp"]).isEmpty ? s : nil
}()

let bubblewrapAvailable = Subprocess.which("bwrap") != nil
