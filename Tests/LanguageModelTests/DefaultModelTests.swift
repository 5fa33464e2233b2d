import Foundation
import LanguageModel
import TensorCore
import Testing

/// The provisioned default model (tools/provision) against transformers' greedy output on the
/// same weights (tools/gen_default_model_fixture.py). Skipped when the model is not provisioned.
let defaultModelDirectory: String = {
    var url = URL(fileURLWithPath: fixturesDirectory)
    url.deleteLastPathComponent()
    url.deleteLastPathComponent()
    return url.appendingPathComponent("models/smollm2-135m-instruct").path
}()

private struct GreedyFixture: Decodable {
    struct Case: Decodable {
        let prompt: String
        let prompt_ids: [Int]
        let greedy_ids: [Int]
    }
    let model_safetensors_sha256: String
    let cases: [Case]
}

@Suite struct DefaultModelTests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: defaultModelDirectory + "/model.safetensors"),
                   "default model not provisioned (run tools/provision)"))
    func greedyContinuationsMatchTransformers() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/default_model_greedy.json"))
        let fixture = try JSONDecoder().decode(GreedyFixture.self, from: data)
        let model = try Model.load(directory: defaultModelDirectory)
        // All prompts decode together in one batch: batching must not change a greedy token.
        let caches = fixture.cases.map { _ in model.makeCache(maxTokens: 256) }
        var last = try model.forward(zip(caches, fixture.cases).map { ForwardInput(cache: $0, tokens: $1.prompt_ids) }).map { $0[0] }
        var produced = fixture.cases.map { _ in [Int]() }
        let steps = fixture.cases.map(\.greedy_ids.count).max() ?? 0
        for _ in 0..<steps {
            let next = last.map { Sampler.argmax($0) }
            for i in produced.indices { produced[i].append(next[i]) }
            last = try model.forward(zip(caches, next).map { ForwardInput(cache: $0, tokens: [$1]) }).map { $0[0] }
        }
        var matching = 0
        for (i, c) in fixture.cases.enumerated() {
            let ours = Array(produced[i].prefix(c.greedy_ids.count))
            if ours == c.greedy_ids { matching += 1 }
            let firstDiff = zip(ours, c.greedy_ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(ours == c.greedy_ids, "prompt \(i) '\(c.prompt.prefix(30))': first differing token at \(firstDiff.map(String.init) ?? "-") (model sha256 of the fixture: \(fixture.model_safetensors_sha256))")
        }
        print("default model: \(matching)/\(fixture.cases.count) greedy continuations equal transformers' token for token")
    }
}
