import ArgumentParser
import Foundation
import LanguageModel
import TensorCore
import Transfer

#if os(Linux)
/// glibc's `malloc_trim` (not in the Glibc module's headers).
@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32
#endif

/// RssAnon of this process in bytes (Linux /proc): resident anonymous memory, so without the
/// model's file-backed pages that validation and decode touch. 0 where unavailable.
func anonymousResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("RssAnon:") {
        return (line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0) * 1024
    }
    return 0
}

/// Returns freed heap memory to the system where the C library can (glibc's malloc_trim).
func trimHeap() {
    #if os(Linux)
    _ = glibcMallocTrim(0)
    #endif
}

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
/// the plugin's run, validation, the variant's build — and the variant's resident bytes; with
/// `--decode-batch`, decode throughput of a batch mixing base and 3 variants against base alone.
struct VariantBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Time a plugin variant from run to a publishable Variant.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Plugin name.") var plugin = "random-sparse"
    @Option(help: "The plugin's params (JSON).") var params = #"{"density": 0.1, "scale": 0.001}"#
    @Option(help: "Plugin directory (default: beside this executable).") var pluginDir: String?
    @Option(help: "unmerged or merged.") var mode = "unmerged"
    @Option(help: "Element type of unmerged delta values: auto (bf16 over a 16-bit base), f32 or bf16.") var deltaDtype = DeltaValueType.auto
    @Option(help: "Also time decode of a batch of this many sequences: base alone, then base and 3 variants mixed (0: skip).")
    var decodeBatch = 0
    @Option(help: "Decode steps timed per run.") var steps = 16
    @Option(help: "Runs of base and of mixed, alternated; medians are reported.") var repeats = 5

    func run() throws {
        guard let m = LanguageModel.VariantMode(rawValue: mode) else { throw ValidationError("--mode must be unmerged or merged") }
        let t0 = Date()
        let builder = try deltaBuilder(model: model)
        let t1 = Date()
        let host = PluginHost(directory: pluginDir ?? PluginHost.executableDirectory)
        do {
            let delta = try host.run(plugin, params: params, weights: builder.weights)
            let t2 = Date()
            let (variant, _) = try builder.build(name: "bench", deltas: [("plugin:" + plugin, delta)], mode: m, valueType: deltaDtype)
            let t3 = Date()
            let modelBytes = builder.weights.storage.files.reduce(0) { $0 + $1.fileSize }
            print(String(format: #"{"model_load_s": %.3f, "plugin_s": %.3f, "validate_build_s": %.3f, "post_to_publish_s": %.3f, "tensors": %d, "delta_bytes": %d, "resident_bytes": %d, "delta_dtype": "\#(variant.valueType.rawValue.lowercased())", "model_bytes": %d}"#,
                         t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), t3.timeIntervalSince(t2), t3.timeIntervalSince(t1),
                         variant.targets.count, delta.byteCount, variant.residentBytes, modelBytes))
            guard decodeBatch > 0 else { return }
            let model = Model(weights: builder.weights, pool: WorkerPool())
            // Base alone vs base + 3 variants (the seeds differ), round-robin over the batch.
            var variants: [Variant?] = [nil]
            var deltaBytes: [Int] = []
            // RSS before and after, with freed heap memory handed back to the system first (the
            // plugins' f32 outputs are freed as each build ends; glibc would keep them resident).
            trimHeap()
            let rss0 = anonymousResidentBytes()
            for seed in 1...3 {
                var p = (try? JSONSerialization.jsonObject(with: Data(params.utf8))) as? [String: Any] ?? [:]
                p["seed"] = seed
                let text = String(decoding: try JSONSerialization.data(withJSONObject: p), as: UTF8.self)
                let d = try host.run(plugin, params: text, weights: builder.weights)
                deltaBytes.append(d.byteCount)
                variants.append(try builder.build(name: "v\(seed)", deltas: [("bench", d)], mode: m, valueType: deltaDtype).0)
            }
            trimHeap()
            let rssPerVariant = (anonymousResidentBytes() - rss0) / 3
            // Accuracy of the storage type: the same delta held in f32 and in bf16, one prompt's logits.
            let prompt = (0..<32).map { ($0 * 97 + 13) % model.config.vocabSize }
            func logits(_ v: Variant?) throws -> [Float] {
                try model.forward([ForwardInput(cache: model.makeCache(maxTokens: 64), tokens: prompt, variant: v)])[0][0]
            }
            let exact = try logits(try builder.build(name: "f32", deltas: [("bench", delta)], mode: .unmerged, valueType: .f32).0)
            let rounded = try logits(try builder.build(name: "bf16", deltas: [("bench", delta)], mode: .unmerged, valueType: .bf16).0)
            let baseLogits = try logits(nil)
            let storageDiff = zip(exact, rounded).map { abs($0 - $1) }.max() ?? 0
            let deltaEffect = zip(exact, baseLogits).map { abs($0 - $1) }.max() ?? 0
            print(String(format: #"{"logits_max_abs_diff_f32_vs_bf16_values": %.3g, "logits_max_abs_diff_variant_vs_base": %.3g, "argmax_equal": \#(Sampler.argmax(exact) == Sampler.argmax(rounded))}"#,
                         Double(storageDiff), Double(deltaEffect)))

            func tokensPerSecond(_ pick: (Int) -> Variant?) throws -> Double {
                let caches = (0..<decodeBatch).map { _ in model.makeCache(maxTokens: 16 + steps) }
                _ = try model.forward((0..<decodeBatch).map { ForwardInput(cache: caches[$0], tokens: [1, 2, 3, 4], variant: pick($0)) })
                let start = Date()
                for _ in 0..<steps {
                    _ = try model.forward((0..<decodeBatch).map { ForwardInput(cache: caches[$0], tokens: [5], variant: pick($0)) })
                }
                return Double(decodeBatch * steps) / Date().timeIntervalSince(start)
            }
            var base: [Double] = [], mixed: [Double] = [], ratios: [Double] = []
            for _ in 0..<max(repeats, 1) {
                let b = try tokensPerSecond { _ in nil }
                let x = try tokensPerSecond { variants[$0 % 4] }
                base.append(b); mixed.append(x); ratios.append(x / b)
            }
            func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
            let resident = variants.compactMap { $0?.residentBytes }
            print(String(format: #"{"decode_batch": %d, "repeats": %d, "base_tokens_per_s": %.1f, "mixed_tokens_per_s": %.1f, "ratio": %.3f, "ratio_min": %.3f, "ratio_max": %.3f, "delta_bytes_per_variant": %d, "resident_bytes_per_variant": %d, "rss_anon_growth_per_variant": %d}"#,
                         decodeBatch, ratios.count, median(base), median(mixed), median(ratios), ratios.min()!, ratios.max()!,
                         deltaBytes.reduce(0, +) / 3, resident.reduce(0, +) / 3, rssPerVariant))
        } catch {
            throw CLIError("\(error)")
        }
    }
}

/// `--delta-dtype`, `--variant-delta-dtype`: parsed, listed in the help and refused with the
/// allowed values by ArgumentParser, as the admin API's `delta_dtype` takes them.
extension DeltaValueType: ExpressibleByArgument {}
extension KVCacheType: ExpressibleByArgument {}
extension ActivationType: ExpressibleByArgument {}

/// `--kv-cache-dtype` of serve, generate and chat.
/// `--activations` of serve, generate and chat.
let activationsHelp = ArgumentHelp("Activations of the products with bf16 weights: f32 (logits as the f32 reference) or bf16 (rounded to bf16 for AVX-512 BF16's dot products: faster prefill and batched decode where the CPU has them, emulated and slower where not; logits move by up to ~0.015 on the reference fixtures). See README, bf16 activations.")

let kvCacheDtypeHelp = ArgumentHelp("KV-cache element type: f32 (logits as the f32 reference) or bf16 (half the memory per token; logits move by up to ~0.01 on the reference fixtures).")
