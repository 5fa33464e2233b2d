import Foundation
import SafeTensors
import Testing
import Tokenizers
@testable import Training

@Suite struct FinetuneTests {
    static func tinyData() throws -> [TrainingSequence] {
        let ref = try Reference("grads-llama-tiny-f32.safetensors")
        let seqs = try ref.batch().sequences
        return seqs + seqs.map { TrainingSequence(tokens: $0.tokens.reversed(), labels: $0.tokens.reversed()) }
    }

    /// Four steps straight equal two steps, a checkpoint, a fresh process state resumed from it,
    /// and two more steps: parameters, optimizer state and data order all come back.
    @Test(arguments: [false, true])
    func resumeIsExact(_ full: Bool) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("graft-ckpt-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var options = FinetuneOptions()
        options.epochs = 2
        options.batchSize = 3
        options.microBatchSize = 2
        options.learningRate = 1e-2
        options.loraRank = full ? nil : 4
        options.loraAlpha = 8
        options.initialization = full ? .random : .pissa
        options.schedule = .cosine
        options.weightDecay = 0.01
        let data = try Self.tinyData()
        let straight = try Finetuner(model: try loadTiny("llama-tiny-f32"), data: data, options: options)
        #expect(straight.totalSteps == 4)
        try straight.run()

        let first = try Finetuner(model: try loadTiny("llama-tiny-f32"), data: data, options: options)
        for _ in 0..<2 {
            let ids = first.order(epoch: first.step / first.stepsPerEpoch)
            let i = first.step % first.stepsPerEpoch
            try first.trainStep(ids[(i * 3)..<min((i + 1) * 3, ids.count)].map { data[$0] })
        }
        try first.saveCheckpoint(to: path)
        let resumed = try Finetuner(model: try loadTiny("llama-tiny-f32"), data: data, options: options)
        try resumed.resume(from: path)
        #expect(resumed.step == 2)
        try resumed.run()
        for (a, b) in zip(straight.slots, resumed.slots) {
            #expect(a.name == b.name)
            #expect(Array(UnsafeBufferPointer(start: a.value, count: a.count)) == Array(UnsafeBufferPointer(start: b.value, count: b.count)), "\(a.name)")
        }
    }

    /// A full fine-tune that cannot fit is refused before anything is allocated, with the figure.
    @Test func fullFineTuneRefusedWhenItCannotFit() throws {
        var options = FinetuneOptions()
        options.loraRank = nil
        options.memoryLimitBytes = 1 << 20
        let model = try loadTiny("llama-tiny-f32")
        #expect(throws: TrainingError.self) { try Finetuner(model: model, data: try Self.tinyData(), options: options) }
        do {
            _ = try Finetuner(model: model, data: try Self.tinyData(), options: options)
        } catch let e as TrainingError {
            #expect(e.description.contains("MiB") && e.description.contains("full fine-tune"))
        }
        // Nothing became writable: the refusal came first.
        #expect(model.linears.allSatisfy { !$0.isWritable })
    }

    @Test func fullFineTuneDeltaIsTheWeightChange() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("graft-full-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var options = FinetuneOptions()
        options.loraRank = nil
        options.batchSize = 3
        options.learningRate = 1e-3
        let model = try loadTiny("qwen2-tiny-bf16")
        let ft = try Finetuner(model: model, data: try Self.tinyData(), options: options)
        try ft.run()
        try ft.saveDelta(to: path)
        let file = try SafeTensorsFile(path: path)
        let name = "model.layers.0.mlp.up_proj.weight"
        let raw = try file.data(name + ".dense")
        let d0 = raw.loadUnaligned(fromByteOffset: 0, as: Float.self)
        let fresh = try loadTiny("qwen2-tiny-bf16")
        let original = fresh.linear(named: name)!.weight[0]
        #expect(abs(model.linear(named: name)!.weight[0] - (original + d0)) < 1e-6)
        #expect(d0 != 0)
    }

    @Test func sensitivitiesAccumulateAbsoluteThetaTimesGradient() throws {
        let data = try Self.tinyData()
        let model = try loadTiny("llama-tiny-f32")
        let name = "model.layers.1.mlp.down_proj.weight"
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: 64 * 160)
        acc.initialize(repeating: 0, count: 64 * 160)
        defer { acc.deallocate() }
        try model.accumulateSensitivities(Array(data.prefix(2)), into: [name: acc])
        // By hand: per-example gradients.
        let check = try loadTiny("llama-tiny-f32")
        try check.requestGradient(name)
        var expected = [Float](repeating: 0, count: 64 * 160)
        for ex in data.prefix(2) {
            check.zeroGradients()
            try check.lossAndGradients(TrainingBatch([ex]))
            let g = check.gradient(name)!, w = check.parameter(name)!
            for i in 0..<expected.count { expected[i] += abs(w[i] * g[i]) }
        }
        #expect(relativeError(acc, expected) < 1e-6)
    }

    @Test func promptCompletionAndChatData() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("graft-data-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tokDir = fixturesRoot + "/tokenizers"
        let candidates = (try? FileManager.default.contentsOfDirectory(atPath: tokDir)) ?? []
        guard let name = candidates.sorted().first(where: { FileManager.default.fileExists(atPath: tokDir + "/" + $0 + "/tokenizer_config.json") && (try? Tokenizer(directory: tokDir + "/" + $0))?.chatTemplate != nil }) else {
            return
        }
        let tokenizer = try Tokenizer(directory: tokDir + "/" + name)
        let lines = [
            #"{"prompt": "2+2=", "completion": " 4"}"#,
            #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]}"#,
        ]
        try lines.joined(separator: "\n").write(toFile: dir + "/d.jsonl", atomically: true, encoding: .utf8)
        let seqs = try TrainingData.load(path: dir + "/d.jsonl", tokenizer: tokenizer, maxTokens: 512)
        #expect(seqs.count == 2)
        let pc = seqs[0]
        let prompt = tokenizer.encode("2+2=", addSpecialTokens: true)
        #expect(pc.labels.prefix(prompt.count).allSatisfy { $0 == -100 })
        #expect(Array(pc.tokens[prompt.count...].prefix(tokenizer.encode(" 4").count)) == tokenizer.encode(" 4"))
        let chat = seqs[1]
        let lossText = tokenizer.decode(zip(chat.tokens, chat.labels).filter { $0.1 != -100 }.map(\.0))
        #expect(lossText.contains("Hello there") && lossText.contains("Ciao") && !lossText.contains("Hi") && !lossText.contains("Bye"))
        #expect(tokenizer.decode(chat.tokens) == (try tokenizer.applyChatTemplate(messages: [
            ChatMessage(role: "user", content: "Hi"), ChatMessage(role: "assistant", content: "Hello there"),
            ChatMessage(role: "user", content: "Bye"), ChatMessage(role: "assistant", content: "Ciao")], addGenerationPrompt: false)))
    }
}
