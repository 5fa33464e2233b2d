import Foundation
import LanguageModel
import SafeTensors
import TensorCore
@testable import Transfer

let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
let tinyModel = repositoryRoot + "/Tests/Fixtures/models/llama-tiny-f32"

/// The tiny f32 fixture (2 layers, hidden 64, intermediate 160), loaded once.
let tinyWeights: ModelWeights = {
    let config = try! ModelConfig.load(directory: tinyModel)
    return try! ModelWeights(config: config, storage: SafeTensorsModel(directory: tinyModel))
}()

/// A fresh empty folder under the temporary directory.
func scratchDirectory(_ label: String) -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("graft-transfer-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Deterministic small values in [-scale, scale].
func seededValues(_ count: Int, seed: UInt64, scale: Float = 0.01) -> [Float] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
}

/// One delta of each kind on the tiny model.
func sampleDelta(fingerprint: String) -> Delta {
    let up = LayerModule.up.tensorName(layer: 0)          // [160, 64]
    let down = LayerModule.down.tensorName(layer: 1)      // [64, 160]
    let q = LayerModule.q.tensorName(layer: 1)            // [64, 64]
    let v = LayerModule.v.tensorName(layer: 0)            // [32, 64]
    return Delta(entries: [
        up: [.rows(indices: [3, 17, 99], values: seededValues(3 * 64, seed: 1))],
        down: [.columns(indices: [0, 5], values: seededValues(64 * 2, seed: 2))],
        q: [.lowRank(a: seededValues(2 * 64, seed: 3, scale: 0.1), b: seededValues(64 * 2, seed: 4, scale: 0.1), rank: 2, scale: 0.5)],
        v: [.dense(values: seededValues(32 * 64, seed: 5))],
    ], metadata: DeltaMetadata(modelFingerprint: fingerprint, strategy: "test", parameters: "{\"seed\":1}"))
}
