import Foundation
import LanguageModel
import SafeTensors
import TensorCore

/// The repository's Tests/Fixtures folder, found from this file's path.
let fixturesDirectory: String = {
    var url = URL(fileURLWithPath: #filePath)
    url.deleteLastPathComponent()
    url.deleteLastPathComponent()
    return url.appendingPathComponent("Fixtures").path
}()

/// One reference case made by tools/gen_model_fixtures.py with transformers.
struct ReferenceSequence {
    let tokens: [Int]
    let promptLength: Int
    let logits: [[Float]]   // one row per position of `tokens`
}

func loadReference(model name: String) throws -> (Model, [ReferenceSequence]) {
    let dir = fixturesDirectory + "/models/" + name
    let model = try Model.load(directory: dir, pool: WorkerPool(threads: 2))
    let expected = try SafeTensorsFile(path: dir + "/expected.safetensors")
    let lengthsJSON = expected.metadata["prompt_lengths"] ?? "[]"
    let lengths = try JSONDecoder().decode([Int].self, from: Data(lengthsJSON.utf8))
    var sequences: [ReferenceSequence] = []
    for (i, promptLength) in lengths.enumerated() {
        let tokInfo = try expected.info("tokens.\(i)")
        let tokData = try expected.data("tokens.\(i)")
        let tokens = (0..<tokInfo.elementCount).map { Int(tokData.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        let logInfo = try expected.info("logits.\(i)")
        let logData = try expected.data("logits.\(i)")
        let vocab = logInfo.shape[1]
        let rows = (0..<logInfo.shape[0]).map { r in
            (0..<vocab).map { logData.loadUnaligned(fromByteOffset: (r * vocab + $0) * 4, as: Float.self) }
        }
        sequences.append(ReferenceSequence(tokens: tokens, promptLength: promptLength, logits: rows))
    }
    return (model, sequences)
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}
