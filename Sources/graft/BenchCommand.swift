import ArgumentParser
import Foundation
import LanguageModel
import SafeTensors
import TensorCore

/// `graft bench`: the engine's figures with their bounds, measured in the same run.
/// Decode is memory-bound (floor: weight bytes / read bandwidth); prefill is compute-bound
/// (reference: OpenBLAS sgemm at the same thread count). Medians over repeats.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark prefill and (batched) decode against the memory-bandwidth bound and OpenBLAS's GEMM rate.")

    @Option(help: "Model folder.") var model = "models/smollm2-135m-instruct"
    @Option(help: "Thread counts (comma-separated).") var threads = "1,2"
    @Option(help: "Weight dtypes: the stored one and/or f32 (a widened copy written to a temp folder).") var dtypes = "stored,f32"
    @Option(help: "Prefill lengths (comma-separated).") var prefill = "128,512"
    @Option(help: "Decode batch sizes (comma-separated).") var batches = "1,4,16,64"
    @Option(help: "Decode steps timed per repeat.") var steps = 16
    @Option(help: "KV-cache element types to bench decode with (comma-separated: f32, bf16).") var kvCacheDtypes = "f32"
    @Option(help: "Activation types of the products with bf16 weights (comma-separated: f32, bf16; see serve --activations).")
    var activations = "f32"
    @Option(help: "Decode context: prompt tokens of each sequence before the timed steps.") var context = 4
    @Option(help: "Repeats (the median is reported).") var repeats = 5
    @Option(name: .customLong("probe-mib"),
            help: "Size of the bandwidth probe buffer (MiB); default: the weight bytes one decode step reads, at most 1024, so the probe meets the same caches as decode.")
    var probeMiB: Int?
    @Option(help: "Opens with a warm page cache timed to the first token (the median is reported).") var openRepeats = 3
    @Option(help: "Also write the results as JSON here.") var json: String?
    @Flag(help: "After each decode figure, run the same steps again with a per-phase timing breakdown.") var profile = false

    func run() throws {
        let threadCounts = try list(threads, "--threads")
        let prefillLengths = try list(prefill, "--prefill")
        let batchSizes = try list(batches, "--batches")
        let kvTypes = try names(kvCacheDtypes, "--kv-cache-dtypes", as: KVCacheType.self)
        let activationTypes = try names(activations, "--activations", as: ActivationType.self)
        guard context >= 1 else { throw ValidationError("--context must be at least 1") }
        print("graft bench — \(model)")
        print("cpu kernels: \(SystemInfo.kernelName); bf16-activation products: \(bf16ActivationPath.rawValue); OpenBLAS core: \(SystemInfo.openBLASCoreName); cores: \(ProcessInfo.processInfo.activeProcessorCount)")
        var records: [[String: Any]] = []
        // Open to first token: mmap only, nothing copied. The first pass may read the weights
        // from disk; the later ones have a warm page cache (their median is the figure).
        var warmFirstTokens: [Double] = []
        for pass in ["first"] + Array(repeating: "warm", count: max(1, openRepeats)) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let m = try Model.load(directory: model, pool: WorkerPool())
            let t1 = DispatchTime.now().uptimeNanoseconds
            _ = try m.forward([ForwardInput(cache: m.makeCache(maxTokens: 8), tokens: [1])])
            let t2 = DispatchTime.now().uptimeNanoseconds
            let load = Double(t1 - t0) / 1e9, first = Double(t2 - t0) / 1e9
            let huge = hugePageWeightBytes()
            print(String(format: "open (%@ pass): load %.3f s, first token after %.3f s, resident %.0f MiB, weights %.0f MiB (%.0f MiB of them mapped in 2 MiB pages)",
                         pass, load, first, Double(residentBytes()) / 1048576, Double(m.weights.bytesPerStep) / 1048576,
                         Double(huge) / 1048576))
            records.append(["kind": "open", "pass": pass, "load_s": load, "first_token_s": first, "rss_bytes": residentBytes(),
                            "weights_in_2mib_pages_bytes": huge])
            if pass == "warm" { warmFirstTokens.append(first) }
        }
        let warmMedian = Probes.median(warmFirstTokens)
        print(String(format: "open to first token, warm page cache: median %.3f s over %d opens (min %.3f, max %.3f)",
                     warmMedian, warmFirstTokens.count, warmFirstTokens.min() ?? 0, warmFirstTokens.max() ?? 0))
        records.append(["kind": "open", "pass": "warm median", "first_token_s": warmMedian, "opens": warmFirstTokens.count])
        var tempDirs: [String] = []
        defer { for d in tempDirs { try? FileManager.default.removeItem(atPath: d) } }
        for dtype in dtypes.split(separator: ",").map(String.init) {
            var dir = model
            if dtype == "f32" {
                let stored = try Model.load(directory: model, pool: WorkerPool(threads: 1))
                if stored.weights.embed.dtype != .f32 {
                    dir = try writeF32Copy(of: model)
                    tempDirs.append(dir)
                }
            } else if dtype != "stored" {
                throw ValidationError("--dtypes takes 'stored' and/or 'f32'")
            }
            for (t, act) in threadCounts.flatMap({ t in activationTypes.map { (t, $0) } }) {
                let m = try Model.load(directory: dir, pool: WorkerPool(threads: t), activations: act)
                let weightBytes = Double(m.weights.bytesPerStep)
                let wdtype = m.weights.embed.dtype.rawValue
                // bf16 activations change only the products with bf16 weights.
                let bf16Products = act == .bf16 && m.weights.layers[0].q.dtype == .bf16
                if act == .bf16 && !bf16Products {
                    print("\n== weights \(wdtype): --activations bf16 applies to bf16 weights only; skipped")
                    continue
                }
                let actLabel = act == .f32 ? "" : ", activations bf16 (\(bf16ActivationPath.rawValue))"
                // The probe reads as many bytes as a decode step (up to 1 GiB), so both meet the
                // same caches; its read patterns (several prefetching streams, as the decode
                // kernel reads) are what keep decode from "beating" its bound, as it did a
                // one-stream probe by up to 25%.
                let probeBytes = probeMiB.map { $0 << 20 } ?? min(m.weights.bytesPerStep, 1 << 30)
                print("\n== weights \(wdtype)\(actLabel) (\(String(format: "%.1f", weightBytes / 1e6)) MB read per decode step), \(t) thread(s); bandwidth probe \(probeBytes >> 20) MiB")
                // Warm the page cache and the kernels once.
                _ = try m.forward([ForwardInput(cache: m.makeCache(), tokens: Array(repeating: 1, count: 8))])

                let sgemm = Probes.sgemmRate(m: 512, n: m.config.intermediateSize, k: m.config.hiddenSize, threads: t, repeats: repeats)
                for n in prefillLengths {
                    let tokens = (0..<n).map { ($0 * 7919 + 13) % m.config.vocabSize }
                    let s = try Probes.medianSeconds(repeats: repeats) {
                        _ = try m.forward([ForwardInput(cache: m.makeCache(maxTokens: n), tokens: tokens)])
                    }
                    let flops = prefillFLOPs(m.config, tokens: n)
                    let rate = flops / s
                    print(String(format: "prefill %4d tokens: %8.1f tok/s  %6.1f GFLOP/s = %5.1f%% of OpenBLAS sgemm (%.1f GFLOP/s, 512×%d×%d, %d thr)",
                                 n, Double(n) / s, rate / 1e9, 100 * rate / sgemm, sgemm / 1e9, m.config.intermediateSize, m.config.hiddenSize, t))
                    records.append(["kind": "prefill", "dtype": wdtype, "activations": act.rawValue, "threads": t, "tokens": n, "tokens_per_s": Double(n) / s,
                                    "gflops": rate / 1e9, "sgemm_gflops": sgemm / 1e9, "ratio_to_sgemm": rate / sgemm])
                }
                for kvType in kvTypes {
                    var single = 0.0
                    for b in batchSizes {
                        let maxTokens = context + 32 + steps * (repeats + 2)
                        /// The prompt of sequence i and its token at decode step `step` (arbitrary,
                        /// distinct, in the vocabulary).
                        func prompt(_ i: Int) -> [Int] { (0..<context).map { j in j < 3 ? 1 + i + j : (j * 31 + i * 7) % 1000 + 5 } }
                        func token(_ i: Int, _ step: Int) -> Int { (i * 31 + step) % 1000 + 5 }
                        let caches = (0..<b).map { _ in m.makeCache(maxTokens: maxTokens, type: kvType) }
                        /// Decode step `step`: one token per sequence.
                        func decodeStep(_ step: Int) throws {
                            _ = try m.forward(caches.enumerated().map { i, c in ForwardInput(cache: c, tokens: [token(i, step)]) })
                        }
                        // Each sequence's prompt on its own (a long context in one step would be one
                        // very large prefill).
                        for (i, c) in caches.enumerated() { _ = try m.forward([ForwardInput(cache: c, tokens: prompt(i))]) }
                        // Beside a batch of more than one, a single sequence (sequence 0's prompt and
                        // tokens) runs `steps` steps just before each repeat, and the speedup is also
                        // given as the median of these pairs' ratios: on a machine whose speed moves
                        // from one minute to the next, a pair meets the same conditions, figures taken
                        // a minute apart need not. Its context grows as the batch's does, so that
                        // attention costs the same per sequence in both.
                        var paired: ((Int) throws -> Void)?
                        if b > 1 && batchSizes.contains(1) {
                            let cache = m.makeCache(maxTokens: maxTokens, type: kvType)
                            _ = try m.forward([ForwardInput(cache: cache, tokens: prompt(0))])
                            paired = { step in _ = try m.forward([ForwardInput(cache: cache, tokens: [token(0, step)])]) }
                        }
                        // Bandwidth right beside each decode figure: it can jump between levels.
                        let patterns = Probes.readBandwidthPatterns(bytes: probeBytes, threads: t, repeats: 3)
                        let bandwidth = patterns.map(\.bytesPerSecond).max() ?? 0
                        let oneStream = patterns.first { $0.streams == 1 }?.bytesPerSecond ?? bandwidth
                        // And the cores' FMA rate: a batch's matmuls are compute-bound.
                        let fmaRate = b > 1 ? Probes.fmaRate(threads: t, bf16DotProducts: bf16Products) : 0
                        var times: [Double] = [], cpuTimes: [Double] = [], pairRatios: [Double] = [], singleTimes: [Double] = []
                        for _ in 0..<max(1, repeats) {
                            if let paired { singleTimes.append(try Probes.seconds { for step in 0..<steps { try paired(step) } }) }
                            let cpu0 = processCPUSeconds()
                            let wall = try Probes.seconds { for step in 0..<steps { try decodeStep(step) } }
                            times.append(wall)
                            cpuTimes.append(processCPUSeconds() - cpu0)
                            if let singleWall = singleTimes.last { pairRatios.append(Double(b) * singleWall / wall) }
                        }
                        let s = Probes.median(times)
                        // CPU time of the whole process per step (median over repeats, as the wall
                        // time): on a loaded machine the wall-clock figure includes waiting for a
                        // core; this does not.
                        let cpuPerStep = Probes.median(cpuTimes) / Double(steps)
                        let perStep = s / Double(steps)
                        let throughput = Double(b) / perStep
                        if b == 1 { single = throughput }
                        let bound = weightBytes / bandwidth
                        let ratio = bound / perStep
                        let kvLabel = kvTypes == [.f32] && context == 4 ? "" : " [kv \(kvType.rawValue), context \(context)+]"
                        var line = String(format: "decode batch %3d:%@ %8.1f tok/s  (%.2f ms/step; bound %.2f ms at %.1f GB/s read → %5.1f%% of bound)",
                                          b, kvLabel, throughput, perStep * 1e3, bound * 1e3, bandwidth / 1e9, 100 * ratio)
                        if b > 1 && single > 0 { line += String(format: "  %.2f× batch 1", throughput / single) }
                        if !pairRatios.isEmpty {
                            line += String(format: " (paired with batch 1 at %.2f ms/step: median %.2f×, range %.2f–%.2f×, %d pairs)",
                                           Probes.median(singleTimes) / Double(steps) * 1e3, Probes.median(pairRatios),
                                           pairRatios.min() ?? 0, pairRatios.max() ?? 0, pairRatios.count)
                        }
                        line += String(format: "  [cpu %.2f ms/step]", cpuPerStep * 1e3)
                        // The bound from the best read pattern; against one plain sequential stream
                        // per thread (a STREAM-like read, the probe before 2026-11-24) for comparison.
                        if b == 1 { line += String(format: "  [one-stream probe %.1f GB/s → %.1f%%]", oneStream / 1e9, 100 * weightBytes / oneStream / perStep) }
                        print(line)
                        // A batch's matmul FLOPs at the FMA-only loop's rate: what the step would
                        // take if its matmuls ran at that rate and nothing else took time.
                        let flops = m.config.decodeMatmulFLOPs(batch: b)
                        let computeBound = fmaRate > 0 ? flops / fmaRate : 0
                        if computeBound > 0 {
                            print(String(format: "  compute bound: %.2f GFLOP of matmuls per step at the %@-only loop's %.1f GFLOP/s (%d thread%@) = %.2f ms; the step takes %.2f× that (matmuls at most %.1f%% of the loop's rate)",
                                         flops / 1e9, bf16Products ? "vdpbf16ps" : "FMA", fmaRate / 1e9, t, t == 1 ? "" : "s", computeBound * 1e3, perStep / computeBound, 100 * computeBound / perStep))
                        }
                        if profile {
                            let p = ForwardProfile()
                            m.profile = p
                            for step in 0..<steps { try decodeStep(step) }
                            m.profile = nil
                            printProfile(p, config: m.config, batch: b)
                        }
                        records.append(["kind": "decode", "dtype": wdtype, "activations": act.rawValue, "kv_cache_dtype": kvType.rawValue, "context": context, "threads": t, "batch": b, "tokens_per_s": throughput,
                                        "ms_per_step": perStep * 1e3, "cpu_ms_per_step": cpuPerStep * 1e3, "bandwidth_gbps": bandwidth / 1e9, "one_stream_gbps": oneStream / 1e9, "bound_ms": bound * 1e3,
                                        "ratio_to_bound": ratio, "speedup_vs_batch1": single > 0 ? throughput / single : 1,
                                        "matmul_gflop_per_step": flops / 1e9, "compute_loop": bf16Products ? "vdpbf16ps" : "fma", "fma_loop_gflops": fmaRate > 0 ? fmaRate / 1e9 : NSNull() as Any,
                                        "compute_bound_ms": computeBound > 0 ? computeBound * 1e3 : NSNull() as Any,
                                        "paired_speedup_vs_batch1": pairRatios.isEmpty ? NSNull() : Probes.median(pairRatios) as Any,
                                        "paired_batch1_ms_per_step": singleTimes.isEmpty ? NSNull() : Probes.median(singleTimes) / Double(steps) * 1e3 as Any])
                    }
                }
            }
        }
        if let json {
            let out: [String: Any] = ["model": model, "kernels": SystemInfo.kernelName, "openblas_core": SystemInfo.openBLASCoreName,
                                      "repeats": repeats, "steps": steps, "results": records]
            let data = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: json))
        }
    }

    /// The comma-separated values of an option whose values are an enum's raw values.
    private func names<T: RawRepresentable & CaseIterable>(_ s: String, _ flag: String, as: T.Type) throws -> [T]
        where T.RawValue == String {
        try s.split(separator: ",").map { name in
            guard let v = T(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(flag) takes \(T.allCases.map(\.rawValue).joined(separator: " and/or "))")
            }
            return v
        }
    }

    private func list(_ s: String, _ flag: String) throws -> [Int] {
        let values = s.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 > 0 }) else { throw ValidationError("\(flag) takes positive integers, e.g. 1,2") }
        return values
    }
}

/// Matmul FLOPs of a prefill (2 per multiply-add) plus attention's QKᵀ and AV, and the lm head
/// for the last token only.
func prefillFLOPs(_ c: ModelConfig, tokens n: Int) -> Double {
    let attention = 2 * 2 * Double(c.qDim) * Double(n) * Double(n + 1) / 2
    return c.layerMatmulFLOPsPerToken * Double(n) + Double(c.layers) * attention + 2 * Double(c.hiddenSize) * Double(c.vocabSize)
}

/// Writes an f32 copy of a model folder's weights (and its config) to a temp folder.
func writeF32Copy(of directory: String) throws -> String {
    let out = NSTemporaryDirectory() + "graft-bench-f32-\(getpid())"
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: directory + "/config.json", toPath: out + "/config.json")
    let source = try SafeTensorsModel(directory: directory)
    var writer = SafeTensorsWriter()
    for name in source.names {
        let info = try source.info(name)
        guard info.dtype.isFloatingPoint else { continue }
        try writer.add(name, dtype: .f32, shape: info.shape) { buffer in
            let data = try source.data(name)
            let w = WeightMatrix(dtype: info.dtype, rows: 1, cols: info.elementCount, base: data.baseAddress!)
            w.widenRow(0, into: buffer.baseAddress!.assumingMemoryBound(to: Float.self))
        }
    }
    try writer.write(to: out + "/model.safetensors")
    return out
}

/// Bytes of this process's safetensors mappings that the kernel maps with 2 MiB pages
/// (FilePmdMapped in /proc/self/smaps; SafeTensorsFile.map asks for them), 0 where unavailable.
/// Decode reads such weights faster than ones in 4 KiB pages.
func hugePageWeightBytes() -> Int {
    // Read line by line with stdio: Foundation's whole-file read stops short on this /proc file.
    guard let f = fopen("/proc/self/smaps", "r") else { return 0 }
    defer { fclose(f) }
    var total = 0, inWeights = false
    var buffer: UnsafeMutablePointer<CChar>? = nil, capacity = 0
    defer { free(buffer) }
    while getline(&buffer, &capacity, f) > 0, let buffer {
        let line = String(cString: buffer)
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard let key = fields.first else { continue }
        if !key.hasSuffix(":") {               // a mapping's header: "start-end perms offset dev inode [path]"
            inWeights = fields.count >= 6 && fields.last!.hasSuffix(".safetensors")
        } else if inWeights && key == "FilePmdMapped:", fields.count >= 2, let kb = Int(fields[1]) {
            total += kb * 1024
        }
    }
    return total
}

/// VmRSS of this process in bytes (Linux /proc), 0 where unavailable.
func residentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kb = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}


/// The breakdown of `graft bench --profile`: wall and CPU ms per step by phase, share of the
/// step's CPU time, and the rate of the matmul phases (2 FLOPs per multiply-add, per CPU
/// second of the submitting thread: with several threads the workers' share is not counted).
func printProfile(_ p: ForwardProfile, config c: ModelConfig, batch: Int) {
    let steps = Double(max(p.steps, 1))
    let total = Double(p.nanoseconds.reduce(0, +)) / steps
    let totalCPU = Double(p.cpuNanoseconds.reduce(0, +)) / steps
    let d = Double(c.hiddenSize), f = Double(c.intermediateSize), layers = Double(c.layers), n = Double(batch)
    func flops(_ phase: ForwardProfile.Phase) -> Double? {
        switch phase {
        case .q, .o: return 2 * n * d * Double(c.qDim) * layers
        case .k, .v: return 2 * n * d * Double(c.kvDim) * layers
        case .gate, .up, .down: return 2 * n * d * f * layers
        case .lmHead: return 2 * n * d * Double(c.vocabSize)
        default: return nil
        }
    }
    func pad(_ s: String) -> String { s.padding(toLength: 18, withPad: " ", startingAt: 0) }
    var matmulNs = 0.0, matmulCPU = 0.0, matmulFlops = 0.0
    print(String(format: "  profile, batch %d, %d steps: %.2f ms/step wall, %.2f ms/step cpu (submitting thread)", batch, p.steps, total / 1e6, totalCPU / 1e6))
    print("    " + pad("phase") + "   wall ms      cpu ms  cpu%   GFLOP/s(cpu)")
    for phase in ForwardProfile.Phase.allCases {
        let ns = Double(p.nanoseconds[phase.rawValue]) / steps, cpu = Double(p.cpuNanoseconds[phase.rawValue]) / steps
        guard ns > 0 else { continue }
        var line = "    " + pad(phase.name) + String(format: " %8.3f    %8.3f %5.1f%%", ns / 1e6, cpu / 1e6, 100 * cpu / totalCPU)
        if let fl = flops(phase) {
            line += String(format: "  %6.1f", fl / cpu)
            matmulNs += ns
            matmulCPU += cpu
            matmulFlops += fl
        }
        print(line)
    }
    print("    " + pad("all matmuls") + String(format: " %8.3f    %8.3f %5.1f%%  %6.1f", matmulNs / 1e6, matmulCPU / 1e6, 100 * matmulCPU / totalCPU, matmulFlops / matmulCPU))
}

/// User plus system CPU seconds of this process so far (all threads).
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}
