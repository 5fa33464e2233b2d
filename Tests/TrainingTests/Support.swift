import Foundation
import SafeTensors
import TensorCore
import Testing
@testable import Training

let fixturesRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    url.deleteLastPathComponent()
    url.deleteLastPathComponent()
    return url.appendingPathComponent("Fixtures").path
}()

let modelsRoot = fixturesRoot + "/models"
let trainingFixtures = fixturesRoot + "/training"

let defaultModelDirectory: String = {
    var url = URL(fileURLWithPath: fixturesRoot)
    url.deleteLastPathComponent()
    url.deleteLastPathComponent()
    return url.appendingPathComponent("models/smollm2-135m-instruct").path
}()

let sharedPool = WorkerPool(threads: 2)

func loadTiny(_ name: String) throws -> TrainingModel {
    try TrainingModel.load(directory: modelsRoot + "/" + name, pool: sharedPool)
}

/// A reference file written by tools/gen_training_fixtures.py.
struct Reference {
    let file: SafeTensorsFile

    init(_ name: String) throws {
        file = try SafeTensorsFile(path: trainingFixtures + "/" + name)
    }

    func has(_ name: String) -> Bool { file.tensors[name] != nil }
    func shape(_ name: String) throws -> [Int] { try file.info(name).shape }

    func floats(_ name: String) throws -> [Float] {
        let info = try file.info(name)
        precondition(info.dtype == .f32, "\(name) is \(info.dtype)")
        let raw = try file.data(name)
        return (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
    }

    func ints(_ name: String) throws -> [Int] {
        let info = try file.info(name)
        precondition(info.dtype == .i32, "\(name) is \(info.dtype)")
        let raw = try file.data(name)
        return (0..<(raw.count / 4)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
    }

    func tensor(_ name: String) throws -> Tensor {
        Tensor(shape: try shape(name), values: try floats(name))
    }

    func rows(_ name: String) throws -> [[Int]] {
        let flat = try ints(name), s = try shape(name)
        return (0..<s[0]).map { Array(flat[($0 * s[1])..<(($0 + 1) * s[1])]) }
    }

    func batch() throws -> TrainingBatch {
        try TrainingBatch(inputIDs: rows("batch.input_ids"), attentionMask: rows("batch.attention_mask"),
                          labels: rows("batch.labels"))
    }
}

/// ‖a − b‖ / ‖b‖ (b the reference); 0 when both are zero.
func relativeError(_ a: UnsafePointer<Float>, _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for i in b.indices {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    a.withUnsafeBufferPointer { relativeError($0.baseAddress!, b) }
}
