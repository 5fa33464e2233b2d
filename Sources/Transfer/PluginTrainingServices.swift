import Foundation
import GraftPluginABI
import LanguageModel
import TensorCore
import Training

/// One model's training side within a run: its TrainingModel (built on first use, once per
/// model per run: it widens the weights it touches) and the host-owned sensitivity buffers
/// accumulate_sensitivities hands out (valid until the run returns). Each service leaves the
/// model as built: no delta, adapter or gradient request survives a call.
final class PluginTraining {
    let model: TrainingModel
    /// target → Σ |θ ⊙ g| over every example of every call, [rows · cols] floats.
    var sensitivities: [String: Tensor] = [:]
    /// The services are not re-entrant (the model owns its scratch memory): a plugin calling
    /// from several threads is serialised.
    let lock = NSLock()

    init(weights: ModelWeights) {
        model = TrainingModel(weights: weights, pool: WorkerPool())
    }

    /// Drops every delta, adapter and gradient request.
    func reset() {
        for l in model.linears {
            l.delta = nil
            l.lora = nil
            l.weightGradient = nil
            l.biasGradient = nil
        }
        for v in model.vectors { v.gradient = nil }
    }
}

extension PluginModel {
    var training: PluginTraining {
        if let t = trainingState { return t }
        let t = PluginTraining(weights: weights)
        trainingState = t
        return t
    }
}

/// A refused service call: the message last_error returns.
struct ServiceFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Tokens per forward when a service splits its examples (losses and gradients add up over
/// the chunks with the whole call's normaliser).
let serviceChunkTokens = 2048

extension HostTable {
    /// The 1.1 gradient services (issue 7): loss_and_gradient, accumulate_sensitivities,
    /// train_lora. A NULL pointer means the service is not offered.
    static func installTrainingServices(_ h: inout graft_host) {
        h.loss_and_gradient = { handle, examples, exampleCount, parameters, parameterCount, loss in
            TrainingServices.call(handle) { m in
                try TrainingServices.lossAndGradient(m, examples, exampleCount, parameters, parameterCount, loss)
            }
        }
        h.accumulate_sensitivities = { handle, examples, exampleCount, targets, targetCount, sums in
            TrainingServices.call(handle) { m in
                try TrainingServices.accumulateSensitivities(m, examples, exampleCount, targets, targetCount, sums)
            }
        }
        h.train_lora = { handle, request, builder in
            TrainingServices.call(handle) { m in try TrainingServices.trainLoRA(m, request, builder) }
        }
    }
}

enum TrainingServices {
    /// Runs a service on a model handle: a thrown error becomes last_error and status 1.
    static func call(_ handle: OpaquePointer?, _ body: (PluginModel) throws -> Void) -> Int32 {
        guard let m = PluginModel.from(handle) else { return 1 }
        let t = m.training
        t.lock.lock()
        defer {
            t.reset()
            t.lock.unlock()
        }
        do {
            try body(m)
            return 0
        } catch let e as ServiceFailure {
            return m.run.setError(e.message)
        } catch {
            return m.run.setError("\(error)")
        }
    }

    static func checkCancelled(_ m: PluginModel) throws {
        if m.run.services.isCancelled?() == true { throw ServiceFailure("cancelled") }
    }

    /// The examples as training sequences (labels NULL: loss on every position but the first).
    static func sequences(_ examples: UnsafePointer<graft_example>?, _ count: Int, vocab: Int) throws -> [TrainingSequence] {
        guard count > 0 else { throw ServiceFailure("no examples") }
        guard let examples else { throw ServiceFailure("examples is NULL") }
        return try (0..<count).map { i in
            let e = examples[i]
            guard e.length > 0, let tokens = e.tokens else { throw ServiceFailure("example \(i) has no tokens") }
            let ids = (0..<e.length).map { Int(tokens[$0]) }
            for t in ids where t < 0 || t >= vocab {
                throw ServiceFailure("example \(i): token \(t) outside the vocabulary (0..<\(vocab))")
            }
            guard let labels = e.labels else { return TrainingSequence(tokens: ids) }
            let ls = (0..<e.length).map { Int(labels[$0]) }
            for l in ls where l != TrainingSequence.ignoreIndex && (l < 0 || l >= vocab) {
                throw ServiceFailure("example \(i): label \(l) is neither -100 nor in the vocabulary (0..<\(vocab))")
            }
            return TrainingSequence(tokens: ids, labels: ls)
        }
    }

    /// Consecutive sequences in batches of at most `serviceChunkTokens` tokens (one at least).
    static func chunks(_ seqs: [TrainingSequence]) -> [[TrainingSequence]] {
        var out: [[TrainingSequence]] = [], current: [TrainingSequence] = [], tokens = 0
        for s in seqs {
            if !current.isEmpty && tokens + s.tokens.count > serviceChunkTokens {
                out.append(current)
                current = []
                tokens = 0
            }
            current.append(s)
            tokens += s.tokens.count
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// The weight matrix a delta parameter or adapter names (not a bias, norm or tied head).
    static func matrix(_ model: TrainingModel, _ name: String, what: String) throws -> Linear {
        guard !name.hasSuffix(".bias"), let l = model.linear(named: name) else {
            let tied = name == "lm_head.weight" && model.isTied ? " (the lm head is tied: name model.embed_tokens.weight)" : ""
            throw ServiceFailure("\(what): '\(name.prefix(200))' is not a weight matrix of the model\(tied) (hint: model.layers.0.mlp.up_proj.weight)")
        }
        return l
    }

    // MARK: loss_and_gradient

    static func lossAndGradient(_ m: PluginModel, _ examples: UnsafePointer<graft_example>?, _ exampleCount: Int,
                                _ parameters: UnsafePointer<graft_delta_parameter>?, _ parameterCount: Int,
                                _ lossOut: UnsafeMutablePointer<Double>?) throws {
        let model = m.training.model
        let seqs = try sequences(examples, exampleCount, vocab: model.config.vocabSize)
        let total = seqs.reduce(0) { $0 + $1.lossTokens }
        guard total > 0 else { throw ServiceFailure("the examples have no labelled positions (every label is -100)") }
        guard parameterCount == 0 || parameters != nil else { throw ServiceFailure("parameters is NULL") }

        var attached: [(linear: Linear, gradient: UnsafeMutablePointer<Float>, count: Int)] = []
        var seen = Set<String>()
        for i in 0..<parameterCount {
            let p = parameters![i]
            guard let target = p.target else { throw ServiceFailure("parameter \(i): target is NULL") }
            let name = String(cString: target)
            let what = "parameter \(i)"
            let l = try matrix(model, name, what: what)
            guard seen.insert(l.name).inserted else { throw ServiceFailure("\(what): '\(name)' appears twice (one parameter per weight)") }
            guard let values = p.values, let gradient = p.gradient else { throw ServiceFailure("\(what) (\(name)): values or gradient is NULL") }
            let out = l.outFeatures, inF = l.inFeatures
            func indices(_ bound: Int, _ axis: String) throws -> [Int] {
                guard p.k > 0, let idx = p.indices else { throw ServiceFailure("\(what) (\(name)): a \(axis) delta needs k ≥ 1 indices") }
                let list = (0..<p.k).map { Int(idx[$0]) }
                if let bad = list.first(where: { $0 < 0 || $0 >= bound }) {
                    throw ServiceFailure("\(what) (\(name)): \(axis) index \(bad) out of range 0..<\(bound)")
                }
                guard Set(list).count == list.count else { throw ServiceFailure("\(what) (\(name)): \(axis) indices repeat") }
                return list
            }
            let delta: WeightDelta
            switch p.kind {
            case Int32(GRAFT_DELTA_DENSE.rawValue):
                delta = .dense(Tensor(shape: [out, inF], values: Array(UnsafeBufferPointer(start: values, count: out * inF))))
            case Int32(GRAFT_DELTA_ROWS.rawValue):
                let rows = try indices(out, "row")
                delta = .rows(rows, Tensor(shape: [rows.count, inF], values: Array(UnsafeBufferPointer(start: values, count: rows.count * inF))))
            case Int32(GRAFT_DELTA_COLUMNS.rawValue):
                let cols = try indices(inF, "column")
                delta = .columns(cols, Tensor(shape: [out, cols.count], values: Array(UnsafeBufferPointer(start: values, count: out * cols.count))))
            default:
                throw ServiceFailure("\(what) (\(name)): kind \(p.kind) is not a delta kind (0 dense, 1 rows, 2 columns)")
            }
            try model.setDelta(l.name, delta)
            let count: Int
            switch delta {
            case .dense: count = out * inF
            case .rows(let r, _): count = r.count * inF
            case .columns(let c, _): count = out * c.count
            }
            attached.append((l, gradient, count))
        }

        model.zeroGradients()
        var loss = 0.0
        for chunk in chunks(seqs) {
            try checkCancelled(m)
            loss += try model.lossAndGradients(TrainingBatch(chunk), normalizer: Double(total), backward: !attached.isEmpty).loss
        }
        for (l, gradient, count) in attached {
            guard let g = l.deltaGradient?.tensor else { throw ServiceFailure("\(l.name): no delta gradient (internal)") }
            gradient.update(from: g.data, count: count)
        }
        lossOut?.pointee = loss
    }

    // MARK: accumulate_sensitivities

    /// Elements of a named tensor (weights, biases, norms), nil when the model has none.
    static func elementCount(_ model: TrainingModel, _ name: String) -> Int? {
        if let v = model.vector(named: name) { return v.value.count }
        guard let l = model.linear(named: name) else { return nil }
        if name.hasSuffix(".bias") { return l.bias?.count }
        return l.outFeatures * l.inFeatures
    }

    static func accumulateSensitivities(_ m: PluginModel, _ examples: UnsafePointer<graft_example>?, _ exampleCount: Int,
                                        _ targets: UnsafePointer<UnsafePointer<CChar>?>?, _ targetCount: Int,
                                        _ sums: UnsafeMutablePointer<UnsafePointer<Float>?>?) throws {
        let t = m.training, model = t.model
        let seqs = try sequences(examples, exampleCount, vocab: model.config.vocabSize)
        guard targetCount > 0, let targets, let sums else { throw ServiceFailure("no targets, or targets/sums is NULL") }
        var names: [String] = []
        for i in 0..<targetCount {
            guard let p = targets[i] else { throw ServiceFailure("target \(i) is NULL") }
            let name = String(cString: p)
            guard let count = elementCount(model, name) else {
                throw ServiceFailure("target \(i): the model has no tensor '\(name.prefix(200))' (hint: model.layers.0.mlp.up_proj.weight)")
            }
            if t.sensitivities[name] == nil { t.sensitivities[name] = Tensor(shape: [count]) }
            names.append(name)
        }
        let accumulators = Dictionary(names.map { ($0, t.sensitivities[$0]!.data) }, uniquingKeysWith: { a, _ in a })
        // A few examples at a time, so that a cancelled job returns soon.
        var i = 0
        while i < seqs.count {
            try checkCancelled(m)
            let part = Array(seqs[i..<min(i + 8, seqs.count)])
            try model.accumulateSensitivities(part, into: accumulators)
            i += part.count
        }
        for (j, name) in names.enumerated() { sums[j] = UnsafePointer(t.sensitivities[name]!.data) }
    }

    // MARK: train_lora

    static func trainLoRA(_ m: PluginModel, _ requestPointer: UnsafePointer<graft_lora_request>?, _ builder: OpaquePointer?) throws {
        guard let requestPointer else { throw ServiceFailure("request is NULL") }
        guard requestPointer.pointee.struct_size >= UInt32(MemoryLayout<graft_lora_request>.size) else {
            throw ServiceFailure("graft_lora_request.struct_size is \(requestPointer.pointee.struct_size); this host reads \(MemoryLayout<graft_lora_request>.size) bytes")
        }
        let r = requestPointer.pointee
        let model = m.training.model
        guard r.rank >= 1 else { throw ServiceFailure("rank must be ≥ 1") }
        guard r.alpha.isFinite, r.alpha > 0 else { throw ServiceFailure("alpha must be positive") }
        guard r.epochs >= 1, r.batch_size >= 1 else { throw ServiceFailure("epochs and batch_size must be ≥ 1") }
        guard r.learning_rate.isFinite, r.learning_rate > 0 else { throw ServiceFailure("learning_rate must be positive") }
        guard r.weight_decay.isFinite, r.weight_decay >= 0 else { throw ServiceFailure("weight_decay must be ≥ 0") }
        guard r.warmup_fraction >= 0, r.warmup_fraction <= 1 else { throw ServiceFailure("warmup_fraction must be in [0, 1]") }
        guard r.target_count > 0, let targets = r.targets, let aList = r.a, let bList = r.b else {
            throw ServiceFailure("no targets, or targets/a/b is NULL")
        }
        let seqs = try sequences(r.examples, r.example_count, vocab: model.config.vocabSize)
        guard seqs.contains(where: { $0.lossTokens > 0 }) else { throw ServiceFailure("the examples have no labelled positions") }
        let rank = Int(r.rank), scale = r.alpha / Float(r.rank)

        // The adapted weights: decoder-layer matrices, each once.
        let layerLinears = Set(model.layers.flatMap { $0.linears.map(\.name) })
        var linears: [Linear] = [], pairs: [String: (b: Tensor, a: Tensor)] = [:]
        for i in 0..<r.target_count {
            guard let p = targets[i] else { throw ServiceFailure("target \(i) is NULL") }
            let name = String(cString: p)
            let l = try matrix(model, name, what: "target \(i)")
            guard layerLinears.contains(l.name) else {
                throw ServiceFailure("target \(i): LoRA adapts decoder-layer projections, not '\(name)'")
            }
            guard pairs[l.name] == nil else { throw ServiceFailure("target \(i): '\(name)' appears twice") }
            guard let a = aList[i], let b = bList[i] else { throw ServiceFailure("target \(i) (\(name)): a or b is NULL") }
            pairs[l.name] = (Tensor(shape: [l.outFeatures, rank], values: Array(UnsafeBufferPointer(start: b, count: l.outFeatures * rank))),
                             Tensor(shape: [rank, l.inFeatures], values: Array(UnsafeBufferPointer(start: a, count: rank * l.inFeatures))))
            linears.append(l)
        }
        // The builder must be this run's, and the delta for its target.
        var run: RunContext? = nil
        if let builder {
            guard let c = RunContext.from(builder), c === m.run else { throw ServiceFailure("the builder belongs to another run") }
            guard c.models["\u{0}target"] === m else {
                throw ServiceFailure("a delta is for the run's target model; '\(m.name)' is another (pass a NULL builder)")
            }
            run = c
        }

        // Compensated start: keep the base to restore it afterwards (the cached model is the
        // run's, and W − sBA + sBA is not W in floating point).
        var saved: [(Linear, [Float])] = []
        if r.compensate != 0 {
            for l in linears { saved.append((l, Array(UnsafeBufferPointer(start: l.weight, count: l.outFeatures * l.inFeatures)))) }
        }
        defer {
            for (l, w) in saved { w.withUnsafeBufferPointer { l.weight.update(from: $0.baseAddress!, count: w.count) } }
        }
        if r.compensate != 0 {
            // attachLoRA matches a target module by ".<module>." in the weight name: the layer
            // and module path (layers.3.mlp.up_proj) picks exactly that weight.
            let modules = linears.map { String($0.name.dropFirst("model.".count).dropLast(".weight".count)) }
            _ = try model.attachLoRA(LoRAConfig(rank: rank, alpha: r.alpha, targets: modules), initialization: .given(pairs))
        } else {
            for l in linears {
                let (b0, a0) = pairs[l.name]!
                l.lora = LoRAAdapter(a: Tensor(copying: a0), b: Tensor(copying: b0), scale: scale)
            }
        }
        guard linears.allSatisfy({ $0.lora != nil }) else { throw ServiceFailure("an adapter was not attached (internal)") }

        let slots = model.loraParameters()
        let optimizer = AdamW(slots, weightDecay: r.weight_decay)
        let batchSize = Int(r.batch_size)
        let stepsPerEpoch = (seqs.count + batchSize - 1) / batchSize, total = stepsPerEpoch * Int(r.epochs)
        let schedule = LearningRateSchedule.cosine(lr: r.learning_rate, warmup: Int((Double(r.warmup_fraction) * Double(total)).rounded()), total: total)
        var lastLoss = 0.0
        for step in 0..<total {
            try checkCancelled(m)
            let epoch = step / stepsPerEpoch, index = step % stepsPerEpoch
            var rng = SplitMix64(seed: r.seed &+ 0x5EED &+ UInt64(epoch) &* 0x9E37_79B9)
            let order = Array(0..<seqs.count).shuffled(using: &rng)
            let batch = order[(index * batchSize)..<min((index + 1) * batchSize, order.count)].map { seqs[$0] }
            let tokens = batch.reduce(0) { $0 + $1.lossTokens }
            model.zeroGradients()
            var loss = 0.0
            if tokens > 0 {
                for chunk in chunks(batch) {
                    loss += try model.lossAndGradients(TrainingBatch(chunk), normalizer: Double(tokens)).loss
                }
                optimizer.step(lr: schedule.rate(at: step))
            }
            lastLoss = loss
            m.run.services.progress?(Double(step + 1) / Double(total), "train_lora step \(step + 1)/\(total), loss \(String(format: "%.4f", loss))")
        }
        r.final_loss?.pointee = lastLoss

        // The trained adapters back to the plugin, and the delta against the original base.
        for (i, l) in linears.enumerated() {
            let lora = l.lora!
            aList[i]!.update(from: lora.a.data, count: lora.a.count)
            bList[i]!.update(from: lora.b.data, count: lora.b.count)
        }
        guard let run else { return }
        for l in linears {
            let lora = l.lora!, out = l.outFeatures
            let entry: DeltaEntry
            if r.compensate != 0 {
                // [B′, −B₀] · [A′; A₀] = B′A′ − B₀A₀ (rank 2r), PEFT's convert_pissa_to_lora.
                let (b0, a0) = pairs[l.name]!
                var b = [Float](repeating: 0, count: out * 2 * rank)
                for o in 0..<out {
                    for j in 0..<rank {
                        b[o * 2 * rank + j] = lora.b[o * rank + j]
                        b[o * 2 * rank + rank + j] = -b0[o * rank + j]
                    }
                }
                entry = .lowRank(a: lora.a.values + a0.values, b: b, rank: 2 * rank, scale: scale)
            } else {
                entry = .lowRank(a: lora.a.values, b: lora.b.values, rank: rank, scale: scale)
            }
            if run.add(l.name, entry) != 0 {
                throw ServiceFailure("the builder refused \(l.name): \(run.lastError.map { String(cString: $0) } ?? "refused")")
            }
        }
    }
}
