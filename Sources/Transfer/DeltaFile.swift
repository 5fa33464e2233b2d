import Foundation
import LanguageModel
import SafeTensors
import TensorCore

/// The on-disk delta: a safetensors file whose tensors are the target name plus a suffix —
/// `.dense` `[out, in]`; `.rows` (i32 `[k]`) with `.row_values` `[k, in]`; `.cols` (i32 `[k]`)
/// with `.col_values` `[out, k]`; `.lora_a` `[r, in]` with `.lora_b` `[out, r]` and the scale
/// in `__metadata__` (`lora_scale`, or `lora_scale.<target>` for one tensor). Values are f32 on
/// write; f32, bf16 and f16 are read.
public enum DeltaFile {
    static let suffixes = [".dense", ".rows", ".row_values", ".cols", ".col_values", ".lora_a", ".lora_b"]

    /// Reads and checks a delta against the shapes of its target model (`targets`, from
    /// `deltaTargets(of:)`): every name must be a target, every shape must fit, pairs complete.
    /// Values are not bounds-checked here (`DeltaValidator` does it).
    /// `vectors` (from `vectorDeltaTargets(of:)`) are the 1-D targets, which take `.dense` `[n]` only.
    public static func read(path: String, targets: [String: (rows: Int, cols: Int)], vectors: [String: Int] = [:]) throws -> Delta {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch {
            throw TransferError.unreadable(path: path, "\(error)")
        }
        let meta = file.metadata
        guard meta["format"] == DeltaMetadata.format else {
            throw TransferError.unreadable(path: path, "__metadata__ has format '\(meta["format"] ?? "")', not '\(DeltaMetadata.format)' (hint: PEFT adapters are folders with adapter_config.json)")
        }
        guard let version = meta["format_version"], version.split(separator: ".").first == "1" else {
            throw TransferError.unreadable(path: path, "format_version '\(meta["format_version"] ?? "")' is not one this build reads (1)")
        }
        guard let fingerprint = meta["model_fingerprint"], !fingerprint.isEmpty else {
            throw TransferError.unreadable(path: path, "__metadata__ has no model_fingerprint")
        }
        var extra = meta
        for key in ["format", "format_version", "model_fingerprint", "strategy", "parameters"] { extra[key] = nil }
        let metadata = DeltaMetadata(modelFingerprint: fingerprint, strategy: meta["strategy"] ?? "unknown",
                                     parameters: meta["parameters"] ?? "{}", extra: extra)

        // Group the file's tensors by target.
        var byTarget: [String: [String: TensorInfo]] = [:]
        for name in file.names {
            guard let suffix = suffixes.first(where: { name.hasSuffix($0) }) else {
                throw TransferError.badEntry(tensor: name, "the name has none of the suffixes \(suffixes.joined(separator: ", "))")
            }
            let target = String(name.dropLast(suffix.count))
            if let n = vectors[target] {
                guard suffix == ".dense" else {
                    throw TransferError.badEntry(tensor: name, "'\(target)' is a 1-D tensor: only a .dense [\(n)] delta can touch it")
                }
                byTarget[target, default: [:]][suffix] = try file.info(name)
                continue
            }
            guard targets[target] != nil else {
                throw TransferError.badEntry(tensor: name, "'\(target)' is not a matrix of this model a delta can touch (hint: wrong base model?)")
            }
            byTarget[target, default: [:]][suffix] = try file.info(name)
        }

        var entries: [String: [DeltaEntry]] = [:]
        for target in byTarget.keys.sorted() {
            let parts = byTarget[target]!
            if let n = vectors[target] {
                let info = parts[".dense"]!
                guard info.shape == [n] else { throw TransferError.badEntry(tensor: target + ".dense", "shape \(info.shape), expected [\(n)]") }
                entries[target] = [.dense(values: try readFloats(file, info))]
                continue
            }
            let (out, inDim) = targets[target]!
            func floats(_ suffix: String, shape: [Int]) throws -> [Float] {
                let name = target + suffix
                let info = parts[suffix]!
                guard info.shape == shape else {
                    throw TransferError.badEntry(tensor: name, "shape \(info.shape), expected \(shape)")
                }
                return try readFloats(file, info)
            }
            func indices(_ suffix: String, limit: Int) throws -> [Int] {
                let name = target + suffix
                let info = parts[suffix]!
                guard info.rank == 1, info.dtype == .i32 || info.dtype == .i64 else {
                    throw TransferError.badEntry(tensor: name, "indices must be a 1-D I32 tensor, not \(info.dtype.rawValue) \(info.shape)")
                }
                let raw = file.data(for: info)
                let idx: [Int] = (0..<info.shape[0]).map { i in
                    info.dtype == .i32 ? Int(raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                                       : Int(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                }
                if let bad = idx.first(where: { $0 < 0 || $0 >= limit }) {
                    throw TransferError.badEntry(tensor: name, "index \(bad) outside 0..<\(limit)")
                }
                if Set(idx).count != idx.count { throw TransferError.badEntry(tensor: name, "indices repeat") }
                return idx
            }
            func require(_ suffix: String, with partner: String) throws {
                if parts[suffix] != nil && parts[partner] == nil {
                    throw TransferError.badEntry(tensor: target + suffix, "comes without \(target + partner)")
                }
            }
            try require(".rows", with: ".row_values"); try require(".row_values", with: ".rows")
            try require(".cols", with: ".col_values"); try require(".col_values", with: ".cols")
            try require(".lora_a", with: ".lora_b"); try require(".lora_b", with: ".lora_a")

            var list: [DeltaEntry] = []
            if parts[".dense"] != nil {
                list.append(.dense(values: try floats(".dense", shape: [out, inDim])))
            }
            if parts[".rows"] != nil {
                let idx = try indices(".rows", limit: out)
                list.append(.rows(indices: idx, values: try floats(".row_values", shape: [idx.count, inDim])))
            }
            if parts[".cols"] != nil {
                let idx = try indices(".cols", limit: inDim)
                list.append(.columns(indices: idx, values: try floats(".col_values", shape: [out, idx.count])))
            }
            if let a = parts[".lora_a"] {
                guard a.rank == 2, a.shape[0] > 0 else {
                    throw TransferError.badEntry(tensor: target + ".lora_a", "shape \(a.shape), expected [r, \(inDim)] with r > 0")
                }
                let r = a.shape[0]
                let av = try floats(".lora_a", shape: [r, inDim])
                let bv = try floats(".lora_b", shape: [out, r])
                guard let scale = (meta["lora_scale." + target] ?? meta["lora_scale"]).flatMap(Float.init), scale.isFinite else {
                    throw TransferError.badEntry(tensor: target + ".lora_a", "__metadata__ has no finite lora_scale")
                }
                list.append(.lowRank(a: av, b: bv, rank: r, scale: scale))
            }
            entries[target] = list
        }
        return Delta(entries: entries, metadata: metadata)
    }

    /// Writes `delta` as a Graft delta file (write-new + rename: readers see the old file or
    /// the new one). Values are stored in f32, indices in i32.
    public static func write(_ delta: Delta, shapes: [String: (rows: Int, cols: Int)], vectors: [String: Int] = [:], to path: String) throws {
        var meta = delta.metadata.dictionary
        var writer = SafeTensorsWriter()
        let scales = Set(delta.entries.values.joined().compactMap { e -> Float? in
            if case .lowRank(_, _, _, let s) = e { return s } else { return nil }
        })
        for target in delta.entries.keys.sorted() {
            if let n = vectors[target] {
                guard delta.entries[target]!.count == 1, case .dense(let v) = delta.entries[target]![0], v.count == n else {
                    throw TransferError.badEntry(tensor: target, "a 1-D tensor takes one dense entry of \(n) values")
                }
                try writer.add(target + ".dense", dtype: .f32, shape: [n], values: v)
                continue
            }
            guard let (out, inDim) = shapes[target] else {
                throw TransferError.badEntry(tensor: target, "not a matrix of the target model")
            }
            var seen: Set<String> = []
            for entry in delta.entries[target]! {
                if let problem = entry.validate(rows: out, cols: inDim) { throw TransferError.badEntry(tensor: target, problem) }
                let kind: String
                switch entry {
                case .dense(let v):
                    kind = "dense"
                    try writer.add(target + ".dense", dtype: .f32, shape: [out, inDim], values: v)
                case .rows(let idx, let v):
                    kind = "rows"
                    try writer.add(target + ".rows", dtype: .i32, shape: [idx.count], values: idx.map { Int32($0) })
                    try writer.add(target + ".row_values", dtype: .f32, shape: [idx.count, inDim], values: v)
                case .columns(let idx, let v):
                    kind = "cols"
                    try writer.add(target + ".cols", dtype: .i32, shape: [idx.count], values: idx.map { Int32($0) })
                    try writer.add(target + ".col_values", dtype: .f32, shape: [out, idx.count], values: v)
                case .lowRank(let a, let b, let r, let s):
                    kind = "lora"
                    try writer.add(target + ".lora_a", dtype: .f32, shape: [r, inDim], values: a)
                    try writer.add(target + ".lora_b", dtype: .f32, shape: [out, r], values: b)
                    if scales.count == 1 { meta["lora_scale"] = "\(s)" } else { meta["lora_scale." + target] = "\(s)" }
                }
                guard seen.insert(kind).inserted else {
                    throw TransferError.badEntry(tensor: target, "two \(kind) entries on one tensor cannot share a file (merge them first)")
                }
            }
        }
        writer.metadata = meta
        try writer.write(to: path)
    }

    static func readFloats(_ file: SafeTensorsFile, _ info: TensorInfo) throws -> [Float] {
        guard info.dtype == .f32 || info.dtype == .bf16 || info.dtype == .f16 else {
            throw TransferError.badEntry(tensor: info.name, "dtype \(info.dtype.rawValue) is not F32, BF16 or F16")
        }
        let count = info.shape.reduce(1, *)
        guard count > 0 else { return [] }
        let raw = file.data(for: info)
        var out = [Float](repeating: 0, count: count)
        let m = WeightMatrix(dtype: info.dtype, rows: 1, cols: count, base: raw.baseAddress!)
        out.withUnsafeMutableBufferPointer { m.widenRow(0, into: $0.baseAddress!) }
        return out
    }
}
