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
    /// Per prompt, the first token where transformers' own bf16 inference parts from the f32
    /// greedy continuation (64: nowhere).
    let bf16_inference_first_differing: [Int]
    let cases: [Case]
}

@Suite struct DefaultModelTests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: defaultModelDirectory + "/model.safetensors"),
                   "default model not provisioned (run tools/provision)"))
    func greedyContinuationsMatchTransformers() throws {
        let (fixture, produced) = try greedyContinuations(activations: .f32)
        var matching = 0
        for (i, c) in fixture.cases.enumerated() {
            let ours = Array(produced[i].prefix(c.greedy_ids.count))
            if ours == c.greedy_ids { matching += 1 }
            let firstDiff = zip(ours, c.greedy_ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(ours == c.greedy_ids, "prompt \(i) '\(c.prompt.prefix(30))': first differing token at \(firstDiff.map(String.init) ?? "-") (model sha256 of the fixture: \(fixture.model_safetensors_sha256))")
        }
        print("default model: \(matching)/\(fixture.cases.count) greedy continuations equal transformers' token for token")
    }

    /// With bf16 activations the logits move (by up to ~0.015 on the tiny fixtures), so greedy
    /// text may part from transformers' f32 continuation where two tokens are nearly tied. It
    /// must part no sooner, over all prompts, than transformers' own bf16 inference does (which
    /// rounds every intermediate, not only the products' inputs): the tokens before the first
    /// difference, summed over the prompts, at least theirs.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: defaultModelDirectory + "/model.safetensors"),
                   "default model not provisioned (run tools/provision)"),
          .enabled(if: bf16ActivationPath != .scalarEmulated,
                   "no AVX-512: bf16 activations run in scalar code, minutes for this test (KernelTests check that code)"))
    func bf16ActivationsPartNoSoonerThanTransformersBF16() throws {
        let (fixture, produced) = try greedyContinuations(activations: .bf16)
        var firsts: [Int] = []
        for (i, c) in fixture.cases.enumerated() {
            let ours = Array(produced[i].prefix(c.greedy_ids.count))
            firsts.append(zip(ours, c.greedy_ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? c.greedy_ids.count)
        }
        let theirs = fixture.bf16_inference_first_differing
        #expect(theirs.count == firsts.count)
        #expect(firsts.reduce(0, +) >= theirs.reduce(0, +),
                "bf16 activations: first differing token per prompt \(firsts); transformers' bf16 inference \(theirs)")
        print("default model, bf16 activations: \(firsts.filter { $0 == 64 }.count)/\(firsts.count) continuations equal transformers' f32 ones; first differing token per prompt \(firsts) (transformers' bf16 inference: \(theirs))")
    }

    /// Every fixture prompt decoded greedily, all in one batch (batching must not change a greedy
    /// token), as long as the longest reference continuation.
    private func greedyContinuations(activations: ActivationType) throws -> (GreedyFixture, [[Int]]) {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/default_model_greedy.json"))
        let fixture = try JSONDecoder().decode(GreedyFixture.self, from: data)
        let model = try Model.load(directory: defaultModelDirectory, activations: activations)
        let caches = fixture.cases.map { _ in model.makeCache(maxTokens: 256) }
        var last = try model.forward(zip(caches, fixture.cases).map { ForwardInput(cache: $0, tokens: $1.prompt_ids) }).map { $0[0] }
        var produced = fixture.cases.map { _ in [Int]() }
        let steps = fixture.cases.map(\.greedy_ids.count).max() ?? 0
        for _ in 0..<steps {
            let next = last.map { Sampler.argmax($0) }
            for i in produced.indices { produced[i].append(next[i]) }
            last = try model.forward(zip(caches, next).map { ForwardInput(cache: $0, tokens: [$1]) }).map { $0[0] }
        }
        return (fixture, produced)
    }
}
