import Foundation
import LanguageModel
import TensorCore

/// Training throughput against the GEMM peak measured in the same run (issue 7's benchmark).
public enum TrainingBenchmark {
    public struct Result: Sendable {
        public var mode: String
        public var tokensPerSecond: Double
        /// Median over the timed steps (wall clock).
        public var secondsPerStep: Double
        /// FLOPs a step executes in matrix products (forward, per-layer recompute, backward,
        /// attention), per token.
        public var executedFLOPsPerToken: Double
        /// The usual model-FLOPs count: 6·P (full) or 4·P (LoRA: no weight gradients) per token,
        /// P = multiply-accumulates of the weight matrices per token.
        public var modelFLOPsPerToken: Double
        public var peakGFLOPS: Double
        public var peakBytes: Int
        /// CPU seconds a step used (all threads), median over the timed steps.
        public var cpuSecondsPerStep: Double
        public var executedGFLOPPerCPUSecond: Double { executedFLOPsPerToken * tokens / cpuSecondsPerStep / 1e9 }
        public var tokens: Double
        /// Whether the steps kept every layer's activations (no per-layer recompute).
        public var keptActivations = false
        /// Per-phase breakdown of the timed steps (`profile: true`), else nil.
        public var profile: String?

        public var executedGFLOPS: Double { executedFLOPsPerToken * tokensPerSecond / 1e9 }
        public var ratioToPeak: Double { executedGFLOPS / peakGFLOPS }
        public var modelRatioToPeak: Double { modelFLOPsPerToken * tokensPerSecond / 1e9 / peakGFLOPS }
    }

    /// CPU seconds (user + system) this process has used: on a shared machine, FLOPs per CPU
    /// second compare a run with the GEMM peak independently of other jobs' load.
    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// GFLOP per CPU second of square sgemms over the pool (best of `repeats`).
    public static func gemmPeakGFLOPPerCPUSecond(pool: WorkerPool, n: Int = 1536, repeats: Int = 3) -> Double {
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = cpuSeconds()
            gemm(transA: false, transB: true, m: n, n: n, k: n, a.data, lda: n, b.data, ldb: n, c.data, ldc: n, pool: pool)
            best = min(best, cpuSeconds() - t0)
        }
        return 2 * Double(n * n * n) / best / 1e9
    }

    /// Best of `repeats` square sgemms of size n split over the pool, as the training GEMMs are.
    public static func gemmPeakGFLOPS(pool: WorkerPool, n: Int = 1536, repeats: Int = 3) -> Double {
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01; b[i] = Float(i % 5) * 0.01 }
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            gemm(transA: false, transB: true, m: n, n: n, k: n, a.data, lda: n, b.data, ldb: n, c.data, ldc: n, pool: pool)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return 2 * Double(n * n * n) / best / 1e9
    }

    /// Runs `steps` training steps (after one warm-up) on random tokens: `batch` sequences of
    /// `length` tokens, every position with a loss; time per step is the median over the steps.
    /// `steps` 0: the warm-up step alone is timed (for peak memory on a model whose steps take
    /// many minutes).
    public static func run(model: TrainingModel, lora: Bool, batch: Int, length: Int, steps: Int,
                           peakGFLOPS: Double, profile: Bool = false) throws -> Result {
        let c = model.config
        var options = FinetuneOptions()
        options.loraRank = lora ? 16 : nil
        options.loraAlpha = 16
        options.batchSize = batch
        options.microBatchSize = batch
        options.schedule = .constant
        options.learningRate = 1e-5
        var rng = SplitMix64(seed: 42)
        let data = (0..<batch).map { _ in TrainingSequence(tokens: (0..<length).map { _ in Int.random(in: 0..<c.vocabSize, using: &rng) }) }
        let ft = try Finetuner(model: model, data: data, options: options)
        let profiler = StepProfiler.shared
        if steps > 0 { try ft.trainStep(data) }
        profiler.reset()
        profiler.enabled = profile
        defer { profiler.enabled = false }
        // Each timed step on its own clock: the figures are medians over the steps.
        let timed = max(1, steps)
        var wall: [Double] = [], cpuTimes: [Double] = []
        for _ in 0..<timed {
            let t0 = DispatchTime.now().uptimeNanoseconds, c0 = cpuSeconds()
            try ft.trainStep(data)
            wall.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            cpuTimes.append(cpuSeconds() - c0)
        }
        let seconds = Probes.median(wall)
        profiler.enabled = false
        let kept = model.lastStepKeptActivations
        let breakdown = profile ? profiler.report(total: wall.reduce(0, +), steps: timed) : nil
        let cpu = Probes.median(cpuTimes)
        let tokens = Double(batch * length)

        // Multiply-accumulates per token.
        let layerMACs = Double(c.hiddenSize * (2 * c.qDim + 2 * c.kvDim) + 3 * c.hiddenSize * c.intermediateSize)
        let lmHead = Double(c.hiddenSize * c.vocabSize)
        let p = Double(c.layers) * layerMACs + lmHead
        // Attention: QKᵀ and PV over full T×T blocks (causal half not skipped), per head.
        let attention = Double(c.layers) * 2 * Double(length) * Double(c.qDim)
        // forward 2, recompute 2 (not the lm head), backward: dx 2 (+ dW 2 when full); attention
        // backward ~2.5× its forward (recomputed P, dP, dQ, dK, dV).
        let layers = Double(c.layers) * layerMACs
        // The recompute only when the step did not keep every layer's activations.
        let recompute: Double = kept ? 0 : 1
        let executed = 2 * p + 2 * layers * recompute + (lora ? 2 : 4) * p + 2 * attention * (1 + recompute + 2.5)
        let model = (lora ? 4 : 6) * p
        return Result(mode: lora ? "lora r16" : "full", tokensPerSecond: tokens / seconds, secondsPerStep: seconds,
                      executedFLOPsPerToken: executed, modelFLOPsPerToken: model, peakGFLOPS: peakGFLOPS,
                      peakBytes: peakResidentBytes(), cpuSecondsPerStep: cpu, tokens: tokens, keptActivations: kept, profile: breakdown)
    }

    /// GFLOP/s of sgemm over the pool at the shapes a step of `rows` rows runs for `model`
    /// (best of `repeats` each): the MLP's forward (x·Wᵀ), its dX (dy·W) and its weight
    /// gradient (dyᵀ·x, K = rows), and the lm head's forward on one cross-entropy chunk.
    public static func gemmShapeGFLOPS(pool: WorkerPool, config c: ModelConfig, rows: Int, repeats: Int = 2) -> [(String, Double)] {
        let d = c.hiddenSize, f = c.intermediateSize
        let chunk = max(1, min(rows, (1 << 24) / c.vocabSize))
        let shapes: [(String, Bool, Bool, Int, Int, Int)] = [
            ("fwd \(rows)x\(f)x\(d)", false, true, rows, f, d),
            ("dX \(rows)x\(d)x\(f)", false, false, rows, d, f),
            ("dW \(f)x\(d)x\(rows)", true, false, f, d, rows),
            ("lm_head \(chunk)x\(c.vocabSize)x\(d)", false, true, chunk, c.vocabSize, d),
        ]
        return shapes.map { name, ta, tb, m, n, k in
            let a = Tensor(shape: [m * k]), b = Tensor(shape: [k * n]), out = Tensor(shape: [m * n])
            for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
            for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
            var best = Double.infinity
            for _ in 0..<repeats {
                let t0 = DispatchTime.now().uptimeNanoseconds
                gemm(transA: ta, transB: tb, m: m, n: n, k: k, a.data, lda: ta ? m : k, b.data, ldb: tb ? k : n,
                     beta: 1, out.data, ldc: n, pool: pool)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            return (name, 2 * Double(m * n * k) / best / 1e9)
        }
    }

    /// VmHWM of /proc/self/status (peak resident set), in bytes.
    public static func peakResidentBytes() -> Int {
        // /proc files report size 0: read them to the end rather than by their stat size.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/status"),
              let data = try? handle.readToEnd(), let text = String(data: data, encoding: .utf8) else { return 0 }
        defer { try? handle.close() }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return 0
    }
}
