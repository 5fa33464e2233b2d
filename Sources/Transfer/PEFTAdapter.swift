import Foundation
import LanguageModel
import SafeTensors

/// PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`) as low-rank deltas.
/// PEFT names `base_model.model.<module>.lora_A.weight` `[r, in]` and `…lora_B.weight`
/// `[out, r]`; the scale is `lora_alpha / r` (`lora_alpha / √r` with `use_rslora`), per
/// module through `rank_pattern` / `alpha_pattern` when present.
public enum PEFTAdapter {
    static let prefix = "base_model.model."

    /// Reads an adapter folder. PEFT records no fingerprint: the delta is stamped with the
    /// model's (`fingerprint`), after its names and shapes were checked against `targets`.
    public static func read(directory: String, targets: [String: (rows: Int, cols: Int)], fingerprint: String) throws -> Delta {
        let configPath = directory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: configPath),
              let config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TransferError.unreadable(path: configPath, "missing or not a JSON object")
        }
        guard (config["peft_type"] as? String)?.uppercased() == "LORA" else {
            throw TransferError.unreadable(path: configPath, "peft_type is not LORA")
        }
        guard let r = (config["r"] as? NSNumber)?.intValue, r > 0, let alpha = (config["lora_alpha"] as? NSNumber)?.doubleValue else {
            throw TransferError.unreadable(path: configPath, "r and lora_alpha are required")
        }
        if (config["use_dora"] as? Bool) == true { throw TransferError.unreadable(path: configPath, "DoRA adapters are not low-rank deltas") }
        let rslora = (config["use_rslora"] as? Bool) ?? false
        let rankPattern = config["rank_pattern"] as? [String: Any] ?? [:]
        let alphaPattern = config["alpha_pattern"] as? [String: Any] ?? [:]
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: directory + "/adapter_model.safetensors")
        } catch {
            throw TransferError.unreadable(path: directory + "/adapter_model.safetensors", "\(error)")
        }
        var entries: [String: [DeltaEntry]] = [:]
        for name in file.names where name.hasSuffix(".lora_A.weight") {
            let module = String(name.dropFirst(name.hasPrefix(prefix) ? prefix.count : 0).dropLast(".lora_A.weight".count))
            let target = module + ".weight"
            guard let (out, inDim) = targets[target] else {
                throw TransferError.badEntry(tensor: name, "'\(target)' is not a matrix of this model a delta can touch (hint: wrong base model?)")
            }
            let bName = String(name.dropLast(".lora_A.weight".count)) + ".lora_B.weight"
            guard file.tensors[bName] != nil else { throw TransferError.badEntry(tensor: name, "comes without \(bName)") }
            let a = try file.info(name), b = try file.info(bName)
            guard a.rank == 2, a.shape[1] == inDim, a.shape[0] > 0 else {
                throw TransferError.badEntry(tensor: name, "shape \(a.shape), expected [r, \(inDim)]")
            }
            let rank = a.shape[0]
            guard b.shape == [out, rank] else { throw TransferError.badEntry(tensor: bName, "shape \(b.shape), expected [\(out), \(rank)]") }
            // Patterns are keyed by a suffix of the module path (PEFT matches by regex/suffix).
            func pattern(_ p: [String: Any]) -> Double? {
                p.first { module == $0.key || module.hasSuffix("." + $0.key) }.flatMap { ($0.value as? NSNumber)?.doubleValue }
            }
            let rr = pattern(rankPattern) ?? Double(r)
            let al = pattern(alphaPattern) ?? alpha
            let scale = Float(rslora ? al / rr.squareRoot() : al / rr)
            entries[target, default: []].append(.lowRank(a: try DeltaFile.readFloats(file, a), b: try DeltaFile.readFloats(file, b),
                                                         rank: rank, scale: scale))
        }
        for name in file.names where !name.hasSuffix(".lora_A.weight") && !name.hasSuffix(".lora_B.weight") {
            throw TransferError.badEntry(tensor: name, "only LoRA A/B weights are read (modules_to_save and biases are not deltas of a matrix)")
        }
        let params = (try? JSONSerialization.data(withJSONObject: ["r": r, "lora_alpha": alpha, "use_rslora": rslora], options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        var extra: [String: String] = ["peft_type": "LORA"]
        if let base = config["base_model_name_or_path"] as? String { extra["base_model_name_or_path"] = base }
        return Delta(entries: entries, metadata: DeltaMetadata(modelFingerprint: fingerprint, strategy: "peft-lora", parameters: params, extra: extra))
    }

    /// Writes the low-rank entries of `delta` as a PEFT adapter folder. Every entry must be
    /// low-rank with one rank and one scale (PEFT's config has one r and one alpha).
    public static func write(_ delta: Delta, directory: String, baseModel: String = "") throws {
        var rank: Int?, scale: Float?
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        var modules: Set<String> = []
        for target in delta.entries.keys.sorted() {
            for entry in delta.entries[target]! {
                guard case .lowRank(let a, let b, let r, let s) = entry else {
                    throw TransferError.badEntry(tensor: target, "only low-rank entries export to PEFT")
                }
                guard rank == nil || (rank == r && scale == s) else {
                    throw TransferError.badEntry(tensor: target, "ranks or scales differ between tensors")
                }
                rank = r
                scale = s
                let module = String(target.dropLast(".weight".count))
                let inDim = a.count / r, out = b.count / r
                try writer.add(prefix + module + ".lora_A.weight", dtype: .f32, shape: [r, inDim], values: a)
                try writer.add(prefix + module + ".lora_B.weight", dtype: .f32, shape: [out, r], values: b)
                modules.insert(String(module.split(separator: ".").last!))
            }
        }
        guard let rank, let scale else { throw TransferError.badEntry(tensor: "", "the delta has no low-rank entries") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try writer.write(to: directory + "/adapter_model.safetensors")
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": Double(scale) * Double(rank),
            "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": false, "use_rslora": false, "use_dora": false,
            "target_modules": modules.sorted(), "base_model_name_or_path": baseModel, "inference_mode": true,
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: directory + "/adapter_config.json"))
    }
}
