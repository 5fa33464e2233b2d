import Foundation

/// `Host` by a name Foundation does not also use (Linux's Foundation has a `Host` class, so a
/// plugin that imports Foundation cannot name PluginKit's in a signature).
public typealias GraftHost = Host

/// One example for the gradient services: tokens, and labels in Hugging Face's convention
/// (labels[i] is the token at position i, -100 = no loss there; nil = every position).
public struct Example {
    public var tokens: [Int32]
    public var labels: [Int32]?
    public init(tokens: [Int32], labels: [Int32]? = nil) {
        self.tokens = tokens
        self.labels = labels
    }
}

/// A delta added to one weight for `lossAndGradient`: dense values [out, in], rows values
/// [k, in] at the row indices, columns values [out, k] at the column indices.
public struct DeltaParameter {
    public enum Kind {
        case dense
        case rows([Int32])
        case columns([Int32])
    }
    public var target: String
    public var kind: Kind
    public var values: [Float]
    public init(target: String, kind: Kind, values: [Float]) {
        self.target = target
        self.kind = kind
        self.values = values
    }
}

/// What `trainLoRA` trains: an adapter per target from a given (A [rank, in], B [out, rank]).
public struct LoRATraining {
    public var targets: [String]
    public var a: [[Float]]
    public var b: [[Float]]
    public var rank: Int
    public var alpha: Float
    /// Start from W − scale·B·A, so that the model is unchanged at step 0.
    public var compensate = true
    public var examples: [Example]
    public var epochs = 1
    public var batchSize = 8
    public var learningRate: Float = 1e-4
    public var weightDecay: Float = 0
    public var warmupFraction: Float = 0.1
    public var seed: UInt64 = 0

    public init(targets: [String], a: [[Float]], b: [[Float]], rank: Int, alpha: Float, examples: [Example]) {
        self.targets = targets
        self.a = a
        self.b = b
        self.rank = rank
        self.alpha = alpha
        self.examples = examples
    }
}

/// C memory that lives for one call (strings, token arrays), freed together.
private final class CallArena {
    private var blocks: [UnsafeMutableRawPointer] = []
    deinit { for b in blocks { free(b) } }

    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(values.count, 1))
        p.initialize(from: values, count: values.count)
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    func examples(_ list: [Example]) -> [graft_example] {
        list.map { e in
            graft_example(tokens: UnsafePointer(copy(e.tokens)), labels: e.labels.map { UnsafePointer(copy($0)) }, length: e.tokens.count)
        }
    }
}

extension Host {
    /// The last 1.1 service error.
    func serviceError(_ what: String) -> PluginError {
        PluginError("\(what): \(lastErrorMessage ?? "failed")")
    }

    /// The mean cross-entropy over the examples' labelled tokens with W + Δ for every
    /// parameter, and ∂loss/∂Δ for each (same layout as its values).
    public func lossAndGradient(_ model: Model, examples: [Example],
                                parameters: [DeltaParameter]) throws -> (loss: Double, gradients: [[Float]]) {
        let f = try service(\.loss_and_gradient, "loss_and_gradient")
        let arena = CallArena()
        let ex = arena.examples(examples)
        var gradients = parameters.map { [Float](repeating: 0, count: $0.values.count) }
        let gradientPointers = gradients.indices.map { i in arena.copy(gradients[i]) }
        let params = parameters.enumerated().map { i, p -> graft_delta_parameter in
            var kind = Int32(GRAFT_DELTA_DENSE.rawValue), indices: [Int32] = []
            switch p.kind {
            case .dense: break
            case .rows(let r): kind = Int32(GRAFT_DELTA_ROWS.rawValue); indices = r
            case .columns(let c): kind = Int32(GRAFT_DELTA_COLUMNS.rawValue); indices = c
            }
            return graft_delta_parameter(target: arena.string(p.target), kind: kind, indices: UnsafePointer(arena.copy(indices)),
                                         k: indices.count, values: UnsafePointer(arena.copy(p.values)), gradient: gradientPointers[i])
        }
        var loss = 0.0
        let status = ex.withUnsafeBufferPointer { e in
            params.withUnsafeBufferPointer { p in f(model.handle, e.baseAddress, e.count, p.baseAddress, p.count, &loss) }
        }
        guard status == 0 else { throw serviceError("loss_and_gradient") }
        for i in gradients.indices {
            gradients[i] = Array(UnsafeBufferPointer(start: gradientPointers[i], count: gradients[i].count))
        }
        return (loss, gradients)
    }

    /// Adds Σ over examples of |θ ⊙ ∂loss_e/∂θ| into the host's buffer of each target and
    /// returns those buffers ([rows · cols] floats each): host memory, valid until the run
    /// returns; later calls with a target keep adding to the same buffer.
    public func accumulateSensitivities(_ model: Model, examples: [Example],
                                        targets: [String]) throws -> [UnsafeBufferPointer<Float>] {
        let f = try service(\.accumulate_sensitivities, "accumulate_sensitivities")
        // A buffer's size is its tensor's: model_tensor_shape, or the target's 1.0 shapes on a
        // host that has the gradient services but not (yet) the model services.
        let modelShape = try? service(\.model_tensor_shape, "model_tensor_shape")
        let targetShape = table.pointee.tensor_shape
        let context = data
        func shape(_ name: String) -> Int? {
            var r: Int64 = 0, c: Int64 = 0
            if let modelShape { return modelShape(model.handle, name, &r, &c) == 0 ? Int(r * c) : nil }
            return targetShape?(context, name, &r, &c) == 0 ? Int(r * c) : nil
        }
        let arena = CallArena()
        let ex = arena.examples(examples)
        let names: [UnsafePointer<CChar>?] = targets.map { arena.string($0) }
        var sums = [UnsafePointer<Float>?](repeating: nil, count: targets.count)
        let status = ex.withUnsafeBufferPointer { e in
            names.withUnsafeBufferPointer { n in
                sums.withUnsafeMutableBufferPointer { s in f(model.handle, e.baseAddress, e.count, n.baseAddress, n.count, s.baseAddress) }
            }
        }
        guard status == 0 else { throw serviceError("accumulate_sensitivities") }
        return try targets.enumerated().map { i, name in
            guard let count = shape(name), let p = sums[i] else { throw PluginError("accumulate_sensitivities: no shape for \(name)") }
            return UnsafeBufferPointer(start: p, count: count)
        }
    }

    /// Trains LoRA from the given (B, A) through the host's engine; returns the trained A and
    /// B and the last step's loss. With `addToDelta`, the host also adds the delta against the
    /// original base to this run's delta (the model must be the target).
    public func trainLoRA(_ model: Model, _ t: LoRATraining,
                          addToDelta: Bool = true) throws -> (a: [[Float]], b: [[Float]], finalLoss: Double) {
        let f = try service(\.train_lora, "train_lora")
        guard t.a.count == t.targets.count, t.b.count == t.targets.count else {
            throw PluginError("trainLoRA: one A and one B per target")
        }
        let arena = CallArena()
        let ex = arena.examples(t.examples)
        let names: [UnsafePointer<CChar>?] = t.targets.map { arena.string($0) }
        let aPointers: [UnsafeMutablePointer<Float>?] = t.a.map { arena.copy($0) }
        let bPointers: [UnsafeMutablePointer<Float>?] = t.b.map { arena.copy($0) }
        var finalLoss = 0.0
        let status = ex.withUnsafeBufferPointer { e in
            names.withUnsafeBufferPointer { n in
                aPointers.withUnsafeBufferPointer { a in
                    bPointers.withUnsafeBufferPointer { b in
                        withUnsafeMutablePointer(to: &finalLoss) { loss in
                            var request = graft_lora_request()
                            request.struct_size = UInt32(MemoryLayout<graft_lora_request>.size)
                            request.targets = n.baseAddress
                            request.target_count = n.count
                            request.rank = Int32(t.rank)
                            request.alpha = t.alpha
                            request.a = a.baseAddress
                            request.b = b.baseAddress
                            request.compensate = t.compensate ? 1 : 0
                            request.examples = e.baseAddress
                            request.example_count = e.count
                            request.epochs = Int32(t.epochs)
                            request.batch_size = Int32(t.batchSize)
                            request.learning_rate = t.learningRate
                            request.weight_decay = t.weightDecay
                            request.warmup_fraction = t.warmupFraction
                            request.seed = t.seed
                            request.final_loss = loss
                            return f(model.handle, &request, addToDelta ? builder : nil)
                        }
                    }
                }
            }
        }
        guard status == 0 else { throw serviceError("train_lora") }
        let a = t.a.indices.map { Array(UnsafeBufferPointer(start: aPointers[$0], count: t.a[$0].count)) }
        let b = t.b.indices.map { Array(UnsafeBufferPointer(start: bPointers[$0], count: t.b[$0].count)) }
        return (a, b, finalLoss)
    }
}
