import Foundation
import Testing
import Tokenizers
@testable import Training

/// A real LoRA fine-tune of the default model (SmolLM2-135M-Instruct) on a small made-up task:
/// the held-out loss on unseen prompts must fall. Skipped when the model is not provisioned.
@Suite struct DefaultModelFinetuneTests {
    static let names = ["Alice", "Bob", "Carol", "Dmitri", "Eve", "Farah", "Gus", "Hiro", "Ines", "Jon", "Kemal", "Lena",
                        "Mona", "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wes", "Xia"]

    static func example(_ name: String, _ tokenizer: Tokenizer) -> TrainingSequence {
        let prompt = tokenizer.encode("Q: What is the secret word of \(name)?\nA:", addSpecialTokens: true)
        let completion = tokenizer.encode(" The secret word of \(name) is pineapple-kazoo.") + [tokenizer.eosTokenID ?? 2]
        return TrainingSequence(prompt: prompt, completion: completion)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: defaultModelDirectory + "/model.safetensors"),
                   "default model not provisioned (run tools/provision)"))
    func loraLowersHeldOutLoss() throws {
        let start = Date()
        let tokenizer = try Tokenizer(directory: defaultModelDirectory)
        let model = try TrainingModel.load(directory: defaultModelDirectory, pool: sharedPool)
        let train = Self.names.prefix(12).map { Self.example($0, tokenizer) }
        let heldOut = Self.names.suffix(4).map { Self.example($0, tokenizer) }
        var options = FinetuneOptions()
        options.loraRank = 8
        options.loraAlpha = 16
        options.learningRate = 3e-3
        options.batchSize = 6
        options.microBatchSize = 6
        options.epochs = 2
        options.schedule = .constant
        options.seed = 1
        let ft = try Finetuner(model: model, data: train, options: options)
        let before = try ft.evaluate(heldOut)
        var losses: [Double] = []
        try ft.run { losses.append($0.loss) }
        let after = try ft.evaluate(heldOut)
        let seconds = Date().timeIntervalSince(start)
        print("default model LoRA: held-out loss \(before) → \(after); train losses \(losses); \(seconds) s")
        #expect(after < before * 0.5, "held-out loss \(before) → \(after)")
    }
}
