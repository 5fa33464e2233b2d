import Foundation
import SafeTensors
import TensorCore

/// Options of a fine-tune run (`graft finetune`).
public struct FinetuneOptions: Sendable, Codable {
    public enum ScheduleKind: String, Sendable, Codable { case constant, linear, cosine, onecycle }
    public enum OptimizerKind: String, Sendable, Codable { case adamw, sgd }
    public enum InitKind: String, Sendable, Codable { case random, pissa, fromDelta = "from-delta" }

    public var epochs = 1
    /// Sequences per optimizer step, and per forward pass (gradients accumulate over the rest).
    public var batchSize = 8
    public var microBatchSize = 8
    public var learningRate: Float = 3e-4
    public var schedule: ScheduleKind = .linear
    public var warmupRatio = 0.1
    public var optimizer: OptimizerKind = .adamw
    public var beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0
    public var momentum: Float = 0
    public var maxGradNorm: Float? = 1
    public var seed: UInt64 = 0
    public var maxTokens = 512
    /// nil: full fine-tune.
    public var loraRank: Int? = 16
    public var loraAlpha: Float = 16
    public var loraTargets = LoRAConfig.defaultTargets
    public var initialization: InitKind = .random
    public var initDelta: String?
    /// Checkpoint every this many steps (0: only at the end) into `checkpointPath`.
    public var checkpointEvery = 0
    public var checkpointPath: String?
    /// Memory the run may use (default: MemAvailable of /proc/meminfo).
    public var memoryLimitBytes: Int?

    public init() {}
}

/// One progress report.
public struct TrainingProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var epoch: Int
    public var loss: Double
    public var learningRate: Float
    public var tokensPerSecond: Double
    public var etaSeconds: Double
    public var gradNorm: Double?
}

/// A fine-tune of a model on a list of sequences: LoRA (random, PiSSA or from a given delta
/// with the base compensated) or full; AdamW or SGD; clipping; accumulation; a schedule;
/// checkpoints that resume exactly (the data order is a function of seed and epoch).
public final class Finetuner {
    public let model: TrainingModel
    public let options: FinetuneOptions
    public let data: [TrainingSequence]
    public let lora: LoRAState?
    public let slots: [ParameterSlot]
    public let optimizer: any Optimizer
    public private(set) var step = 0
    /// Cross-entropy, or distillation to a teacher (supervised KD, GKD's JSD).
    public let objective: Objective
    public var stepsPerEpoch: Int { (data.count + options.batchSize - 1) / options.batchSize }
    public var totalSteps: Int { stepsPerEpoch * options.epochs }

    /// `loraInitialization` overrides `options.initialization` (a plugin's own (B₀, A₀)).
    public init(model: TrainingModel, data: [TrainingSequence], options: FinetuneOptions,
                loraInitialization: LoRAInitialization? = nil, objective: Objective = .crossEntropy) throws {
        guard options.epochs >= 1, options.batchSize >= 1, options.microBatchSize >= 1 else {
            throw TrainingError.invalidArgument("epochs, batch size and micro-batch size must be ≥ 1")
        }
        guard !data.isEmpty else { throw TrainingError.invalidData("no training examples") }
        self.model = model
        self.options = options
        self.objective = objective
        self.data = data
        let longest = data.map(\.tokens.count).max() ?? 0
        let rowsPerStep = min(options.microBatchSize, data.count) * longest
        if let rank = options.loraRank {
            let config = LoRAConfig(rank: rank, alpha: options.loraAlpha, targets: options.loraTargets)
            // Memory: widened copies of non-f32 weights, adapters, compensated copies, activations.
            let widened = model.weights.storage.tensors.values.reduce(0) { $0 + ($1.dtype == .f32 ? 0 : $1.shape.reduce(1, *) * 4) }
            let needed = widened + model.activationBytes(tokensPerStep: rowsPerStep)
            if let available = options.memoryLimitBytes ?? availableMemoryBytes(), needed > available {
                throw TrainingError.insufficientMemory(needed: needed, available: available, what: "LoRA training with \(rowsPerStep) tokens per forward")
            }
            var initialization: LoRAInitialization
            switch options.initialization {
            case .random: initialization = .random(seed: options.seed)
            case .pissa: initialization = .pissa
            case .fromDelta:
                guard let path = options.initDelta else { throw TrainingError.invalidArgument("--init from-delta needs a delta file") }
                let (pairs, scale, fileRank) = try readLoRADelta(path: path)
                guard fileRank == rank, abs(scale - config.scale) <= 1e-6 * max(1, scale) else {
                    throw TrainingError.invalidArgument("\(path) has rank \(fileRank) and scale \(scale); the run asks for rank \(rank), scale \(config.scale)")
                }
                initialization = .given(pairs)
            }
            if let loraInitialization { initialization = loraInitialization }
            lora = try model.attachLoRA(config, initialization: initialization)
            slots = model.loraParameters()
        } else {
            // Refuse a full fine-tune that cannot fit, with the figure, before allocating it.
            let needed = model.fullFineTuneBytes(tokensPerStep: rowsPerStep)
            if let available = options.memoryLimitBytes ?? availableMemoryBytes(), needed > available {
                throw TrainingError.insufficientMemory(
                    needed: needed, available: available,
                    what: "a full fine-tune of \(model.parameterCount) parameters (f32 weights, gradients and AdamW moments: 16 bytes each, plus activations)")
            }
            lora = nil
            slots = model.fullFineTuneParameters()
        }
        switch options.optimizer {
        case .adamw:
            optimizer = AdamW(slots, beta1: options.beta1, beta2: options.beta2, eps: options.eps, weightDecay: options.weightDecay)
        case .sgd:
            optimizer = SGD(slots, momentum: options.momentum, weightDecay: options.weightDecay)
        }
    }

    public var schedule: LearningRateSchedule {
        let total = totalSteps, warmup = Int((options.warmupRatio * Double(total)).rounded())
        switch options.schedule {
        case .constant: return .constant(options.learningRate)
        case .linear: return .linear(lr: options.learningRate, warmup: warmup, total: total)
        case .cosine: return .cosine(lr: options.learningRate, warmup: warmup, total: total)
        case .onecycle: return .oneCycle(maxLR: options.learningRate, total: total, pctStart: options.warmupRatio, divFactor: 25, finalDivFactor: 1)
        }
    }

    /// The data order of an epoch: a seeded shuffle, so a resumed run sees the same batches.
    func order(epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: options.seed &+ 0x5EED &+ UInt64(epoch) &* 0x9E37_79B9)
        return Array(0..<data.count).shuffled(using: &rng)
    }

    /// One optimizer step over `batch` (micro-batches accumulate; the loss is the mean over all
    /// label tokens of the step, as transformers' Trainer computes it with num_items_in_batch).
    @discardableResult
    public func trainStep(_ batch: [TrainingSequence]) throws -> (loss: Double, tokens: Int, gradNorm: Double?) {
        // Weight gradients are zeroed by their first product of the step (no 4-bytes-a-parameter pass).
        profile("zero gradients") { model.zeroGradientsLazily() }
        let total = Double(batch.reduce(0) { $0 + $1.lossTokens })
        var loss = 0.0, tokens = 0
        var i = 0
        while i < batch.count {
            let micro = Array(batch[i..<min(i + options.microBatchSize, batch.count)])
            loss += try model.lossAndGradients(TrainingBatch(micro), objective: objective, normalizer: max(total, 1)).loss
            tokens += micro.reduce(0) { $0 + $1.tokens.count }
            i += options.microBatchSize
        }
        // Clipping: the norm over the pool; the scaling is fused into the optimizer's pass.
        let norm = profile("clip gradients") { options.maxGradNorm.map { _ in gradientNorm(slots, pool: model.pool) } }
        var scale: Float = 1
        if let norm, let maxNorm = options.maxGradNorm { scale = clipCoefficient(total: norm, maxNorm: maxNorm) }
        profile("optimizer") { optimizer.step(lr: schedule.rate(at: step), gradientScale: scale, pool: model.pool) }
        step += 1
        return (loss, tokens, norm)
    }

    /// Runs the remaining steps, reporting after each, checkpointing as configured.
    public func run(progress: (TrainingProgress) -> Void = { _ in }) throws {
        let start = Date()
        var tokensSeen = 0
        let first = step
        while step < totalSteps {
            let epoch = step / stepsPerEpoch, index = step % stepsPerEpoch
            let ids = order(epoch: epoch)
            let batch = ids[(index * options.batchSize)..<min((index + 1) * options.batchSize, ids.count)].map { data[$0] }
            let lr = schedule.rate(at: step)
            let (loss, tokens, norm) = try trainStep(batch)
            tokensSeen += tokens
            let elapsed = Date().timeIntervalSince(start)
            let perStep = elapsed / Double(step - first)
            progress(TrainingProgress(step: step, totalSteps: totalSteps, epoch: epoch + 1, loss: loss, learningRate: lr,
                                      tokensPerSecond: Double(tokensSeen) / max(elapsed, 1e-9),
                                      etaSeconds: perStep * Double(totalSteps - step), gradNorm: norm))
            if let path = options.checkpointPath, options.checkpointEvery > 0, step % options.checkpointEvery == 0 || step == totalSteps {
                try saveCheckpoint(to: path)
            }
        }
    }

    /// Mean loss over `sequences` (no gradients), in batches.
    public func evaluate(_ sequences: [TrainingSequence]) throws -> Double {
        var sum = 0.0, count = 0
        var i = 0
        while i < sequences.count {
            let r = try model.loss(TrainingBatch(Array(sequences[i..<min(i + options.microBatchSize, sequences.count)])), objective: objective)
            sum += r.sum
            count += r.tokens
            i += options.microBatchSize
        }
        return count == 0 ? 0 : sum / Double(count)
    }

    // MARK: Checkpoints

    /// Trainable tensors, optimizer state and the step, in one safetensors file (atomic).
    public func saveCheckpoint(to path: String) throws {
        let opts = String(data: try JSONEncoder().encode(options), encoding: .utf8) ?? "{}"
        var writer = SafeTensorsWriter(metadata: ["format": "graft-checkpoint", "step": "\(step)",
                                                  "optimizer_steps": "\(optimizer.stepCount)", "options": opts,
                                                  "model_fingerprint": model.fingerprint])
        for s in slots {
            try writer.add("param." + s.name, dtype: .f32, shape: [s.count],
                           values: Array(UnsafeBufferPointer(start: s.value, count: s.count)))
        }
        for (name, t) in optimizer.state { try writer.add("optim." + name, dtype: .f32, shape: [t.count], values: t.values) }
        try writer.write(to: path)
    }

    /// Restores a checkpoint written by `saveCheckpoint` for the same model, data and options.
    public func resume(from path: String) throws {
        let file = try SafeTensorsFile(path: path)
        guard file.metadata["format"] == "graft-checkpoint", let s = file.metadata["step"].flatMap(Int.init),
              let o = file.metadata["optimizer_steps"].flatMap(Int.init) else {
            throw TrainingError.invalidData("\(path) is not a graft checkpoint")
        }
        guard file.metadata["model_fingerprint"] == model.fingerprint else {
            throw TrainingError.invalidData("\(path) was written for another model (fingerprint differs)")
        }
        func restore(_ name: String, into p: UnsafeMutablePointer<Float>, count: Int) throws {
            let info = try file.info(name)
            guard info.dtype == .f32, info.shape == [count] else { throw TrainingError.invalidData("\(path): \(name) has the wrong shape") }
            let raw = try file.data(name)
            for i in 0..<count { p[i] = raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
        }
        for slot in slots { try restore("param." + slot.name, into: slot.value, count: slot.count) }
        for (name, t) in optimizer.state { try restore("optim." + name, into: t.data, count: t.count) }
        step = s
        optimizer.stepCount = o
    }

    // MARK: Output

    /// Writes the result as a delta the server hot-injects: low-rank for LoRA (B′A′ − B₀A₀
    /// after a compensated start), dense `<name>.dense` (W′ − W) for a full fine-tune.
    public func saveDelta(to path: String) throws {
        let params: [String: String] = ["epochs": "\(options.epochs)", "lr": "\(options.learningRate)",
                                        "batch_size": "\(options.batchSize)", "steps": "\(step)",
                                        "schedule": options.schedule.rawValue, "optimizer": options.optimizer.rawValue]
        if let lora {
            try model.saveLoRADelta(lora, to: path, parameters: params)
            return
        }
        var writer = SafeTensorsWriter(metadata: ["format": "graft-delta", "format_version": "1",
                                                  "model_fingerprint": model.fingerprint, "strategy": "finetune-full"])
        for l in model.linears {
            guard let info = try? model.weights.storage.info(l.name), let raw = try? model.weights.storage.data(l.name) else { continue }
            let original = WeightMatrix(dtype: info.dtype, rows: l.outFeatures, cols: l.inFeatures, base: raw.baseAddress!)
            let cols = l.inFeatures
            nonisolated(unsafe) let w = l.weight
            try writer.add(l.name + ".dense", dtype: .f32, shape: [l.outFeatures, cols]) { buffer in
                let out = buffer.baseAddress!.assumingMemoryBound(to: Float.self)
                for r in 0..<l.outFeatures {
                    original.widenRow(r, into: out + r * cols)
                    for c in 0..<cols { out[r * cols + c] = w[r * cols + c] - out[r * cols + c] }
                }
            }
        }
        // Biases and norm weights: small dense deltas too.
        func vectorDelta(_ name: String, _ value: UnsafeMutablePointer<Float>, _ count: Int) throws {
            guard let info = try? model.weights.storage.info(name), let raw = try? model.weights.storage.data(name) else { return }
            var original = [Float](repeating: 0, count: count)
            original.withUnsafeMutableBufferPointer {
                WeightMatrix(dtype: info.dtype, rows: 1, cols: count, base: raw.baseAddress!).widenRow(0, into: $0.baseAddress!)
            }
            try writer.add(name + ".dense", dtype: .f32, shape: [count], values: (0..<count).map { value[$0] - original[$0] })
        }
        for l in model.linears {
            if let b = l.bias { try vectorDelta(String(l.name.dropLast(7)) + ".bias", b.data, b.count) }
        }
        for v in model.vectors { try vectorDelta(v.name, v.value.data, v.value.count) }
        try writer.write(to: path)
    }
}
