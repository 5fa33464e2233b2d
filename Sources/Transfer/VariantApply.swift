import Foundation
import LanguageModel
import SafeTensors
import TensorCore

/// `graft variant apply`: a model folder whose touched matrices are W + Δ (in W's dtype),
/// every other tensor and file copied — a merged model any loader reads.
public enum VariantApply {
    public static func write(modelDirectory: String, deltaPaths: [String], output: String, bounds: DeltaBounds = DeltaBounds()) throws {
        let input = URL(fileURLWithPath: modelDirectory).standardizedFileURL.path
        let out = URL(fileURLWithPath: output).standardizedFileURL.path
        guard input != out else { throw TransferError.badPath(output, "the output folder must differ from the model folder") }
        let storage = try SafeTensorsModel(directory: modelDirectory)
        let weights = try ModelWeights(config: try ModelConfig.load(directory: modelDirectory), storage: storage)
        let builder = VariantBuilder(weights: weights, deltaDirectory: nil)
        let deltas = try deltaPaths.map { (origin: $0, delta: try builder.readDelta(operatorPath: $0)) }
        // Validates (names, shapes, fingerprint, values, bounds); the merge below uses the f32
        // entries as read, not the variant's packed copy.
        _ = try builder.build(name: "apply", deltas: deltas, bounds: bounds, valueType: .f32)
        var combined: [String: [DeltaEntry]] = [:]
        for (_, delta) in deltas { for (target, entries) in delta.entries { combined[target, default: []] += entries } }

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: input)
        where !file.hasSuffix(".safetensors") && file != SafeTensorsModel.indexFileName && !file.hasPrefix(".") {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input + "/" + file, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            try? FileManager.default.removeItem(atPath: out + "/" + file)
            try FileManager.default.copyItem(atPath: input + "/" + file, toPath: out + "/" + file)
        }
        var meta = storage.metadata
        meta["graft_base_fingerprint"] = builder.fingerprint
        meta["graft_deltas"] = deltas.map { "\($0.delta.metadata.strategy)@\(URL(fileURLWithPath: $0.origin).lastPathComponent)" }.joined(separator: ",")
        var writer = SafeTensorsWriter(metadata: meta)
        for name in storage.names {
            let info = try storage.info(name)
            let raw = try storage.data(name)
            nonisolated(unsafe) let source = raw
            guard let entries = combined[name], info.rank == 2 || info.rank == 1 else {
                try writer.add(name, dtype: info.dtype, shape: info.shape) { buffer in
                    if source.count > 0 { buffer.copyMemory(from: source) }
                }
                continue
            }
            let rows = info.rank == 2 ? info.shape[0] : 1, cols = info.shape.last!, dtype = info.dtype
            try writer.add(name, dtype: dtype, shape: info.shape) { buffer in
                let w = WeightMatrix(dtype: dtype, rows: rows, cols: cols, base: source.baseAddress!)
                var merged = [Float](repeating: 0, count: rows * cols)
                merged.withUnsafeMutableBufferPointer { m in for r in 0..<rows { w.widenRow(r, into: m.baseAddress! + r * cols) } }
                for e in entries {
                    let d = e.densified(rows: rows, cols: cols)
                    for i in 0..<d.count { merged[i] += d[i] }
                }
                switch dtype {
                case .f32: merged.withUnsafeBytes { buffer.copyMemory(from: $0) }
                case .bf16: for i in 0..<merged.count { buffer.storeBytes(of: floatToBF16(merged[i]), toByteOffset: i * 2, as: UInt16.self) }
                default: for i in 0..<merged.count { buffer.storeBytes(of: floatToF16(merged[i]), toByteOffset: i * 2, as: UInt16.self) }
                }
            }
        }
        try? FileManager.default.removeItem(atPath: out + "/" + SafeTensorsModel.indexFileName)
        try writer.write(to: out + "/" + SafeTensorsModel.singleFileName)
    }
}

/// `graft delta inspect`: a delta file's metadata and tensors, without a model.
public enum DeltaInspection {
    public static func describe(path: String) throws -> String {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw TransferError.unreadable(path: path, "\(error)") }
        var lines = ["\(path): \(file.names.count) tensors, \(file.fileSize) bytes"]
        for key in file.metadata.keys.sorted() { lines.append("  \(key) = \(file.metadata[key]!)") }
        for name in file.names {
            let info = try file.info(name)
            var line = "  \(name)  \(info.dtype.rawValue) \(info.shape)"
            if info.dtype.isFloatingPoint && info.dtype != .f64 {
                let v = try DeltaFile.readFloats(file, info)
                let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let maxAbs = v.reduce(Float(0)) { max($0, abs($1)) }
                line += String(format: "  ‖·‖=%.4g  max|·|=%.4g", norm, Double(maxAbs))
                if v.contains(where: { !$0.isFinite }) { line += "  NON-FINITE" }
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
