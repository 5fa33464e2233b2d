import ArgumentParser
import Foundation
import LanguageModel
import TensorCore
import Transfer

/// `graft variant apply`: a merged model folder (W + Δ) from a model and deltas, offline.
struct VariantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "variant", abstract: "Work with variants offline.", subcommands: [VariantApplyCommand.self, VariantBenchCommand.self])
}

struct VariantApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Write a model folder whose weights are W + Δ.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Delta file or PEFT adapter folder (repeatable; they add up).") var delta: [String]
    @Option(name: .shortAndLong, help: "Output model folder.") var output: String
    @Option(help: "Largest ‖Δ‖/‖W‖ accepted ('inf': no bound).") var maxRelativeNorm = "4"
    @Option(help: "Largest |Δ| value accepted ('inf': no bound).") var maxAbsValue = "16"

    func run() throws {
        guard !delta.isEmpty else { throw ValidationError("give at least one --delta") }
        guard let norm = Float(maxRelativeNorm), let abs = Float(maxAbsValue), norm > 0, abs > 0 else {
            throw ValidationError("--max-relative-norm and --max-abs-value must be positive numbers or inf")
        }
        do {
            try VariantApply.write(modelDirectory: model, deltaPaths: delta, output: output,
                                   bounds: DeltaBounds(maxAbsValue: abs, maxRelativeNorm: norm))
        } catch {
            throw CLIError("\(error)")
        }
        print("wrote \(output)")
    }
}

/// `graft variant bench`: what `POST /v1/variants {"plugin": …}` costs before publication —
/// the plugin's run, validation, the variant's build — and the variant's resident bytes.
struct VariantBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Time a plugin variant from run to a publishable Variant.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Plugin name.") var plugin = "random-sparse"
    @Option(help: "The plugin's params (JSON).") var params = #"{"density": 0.1, "scale": 0.001}"#
    @Option(help: "Plugin directory (default: beside this executable).") var pluginDir: String?
    @Option(help: "unmerged or merged.") var mode = "unmerged"
    @Option(help: "Also time decode of a batch of this many sequences: base alone, then base and 3 variants mixed (0: skip).")
    var decodeBatch = 0
    @Option(help: "Decode steps timed.") var steps = 16

    func run() throws {
        guard let m = LanguageModel.VariantMode(rawValue: mode) else { throw ValidationError("--mode must be unmerged or merged") }
        let t0 = Date()
        let builder = try deltaBuilder(model: model)
        let t1 = Date()
        let host = PluginHost(directory: pluginDir ?? PluginHost.executableDirectory)
        do {
            let delta = try host.run(plugin, params: params, weights: builder.weights)
            let t2 = Date()
            let (variant, _) = try builder.build(name: "bench", deltas: [("plugin:" + plugin, delta)], mode: m)
            let t3 = Date()
            let modelBytes = builder.weights.storage.files.reduce(0) { $0 + $1.fileSize }
            if decodeBatch > 0 {
                // Base alone vs base + 3 variants (the seeds differ), round-robin over the batch.
                var variants: [Variant?] = [nil]
                for seed in 1...3 {
                    var p = (try? JSONSerialization.jsonObject(with: Data(params.utf8))) as? [String: Any] ?? [:]
                    p["seed"] = seed
                    let text = String(decoding: try JSONSerialization.data(withJSONObject: p), as: UTF8.self)
                    variants.append(try builder.build(name: "v\(seed)", deltas: [("bench", try host.run(plugin, params: text, weights: builder.weights))], mode: m).0)
                }
                let model = Model(weights: builder.weights, pool: WorkerPool())
                func tokensPerSecond(_ pick: (Int) -> Variant?) throws -> Double {
                    let caches = (0..<decodeBatch).map { _ in model.makeCache(maxTokens: 16 + steps) }
                    _ = try model.forward((0..<decodeBatch).map { ForwardInput(cache: caches[$0], tokens: [1, 2, 3, 4], variant: pick($0)) })
                    let start = Date()
                    for _ in 0..<steps {
                        _ = try model.forward((0..<decodeBatch).map { ForwardInput(cache: caches[$0], tokens: [5], variant: pick($0)) })
                    }
                    return Double(decodeBatch * steps) / Date().timeIntervalSince(start)
                }
                let base = try tokensPerSecond { _ in nil }
                let mixed = try tokensPerSecond { variants[$0 % 4] }
                print(String(format: #"{"decode_batch": %d, "base_tokens_per_s": %.1f, "mixed_tokens_per_s": %.1f, "ratio": %.3f}"#,
                             decodeBatch, base, mixed, mixed / base))
            }
            print(String(format: #"{"model_load_s": %.3f, "plugin_s": %.3f, "validate_build_s": %.3f, "post_to_publish_s": %.3f, "tensors": %d, "resident_bytes": %d, "model_bytes": %d}"#,
                         t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), t3.timeIntervalSince(t2), t3.timeIntervalSince(t1),
                         variant.deltas.count, variant.residentBytes, modelBytes))
        } catch {
            throw CLIError("\(error)")
        }
    }
}
