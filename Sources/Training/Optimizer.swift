import CTrainKernels
import Foundation
import TensorCore

/// A trainable tensor: its value and its accumulated gradient (same count).
public struct ParameterSlot: @unchecked Sendable {
    public let name: String
    public let value: UnsafeMutablePointer<Float>
    public let gradient: UnsafeMutablePointer<Float>
    public let count: Int
    /// Whether weight decay applies (torch's AdamW decays every tensor it is given).
    public var decays = true
}

extension TrainingModel {
    /// Prepares a full fine-tune: every weight becomes writable (an owned f32 copy) and gets a
    /// full gradient. Returns the slots in the model's order (a tied embedding once).
    public func fullFineTuneParameters() -> [ParameterSlot] {
        var slots: [ParameterSlot] = []
        for l in linears {
            l.makeWritable()
            if l.weightGradient?.selection != .full {
                l.weightGradient = Gradient(selection: .full, rows: l.outFeatures, cols: l.inFeatures)
            }
            slots.append(ParameterSlot(name: l.name, value: l.weight, gradient: l.weightGradient!.tensor.data,
                                       count: l.outFeatures * l.inFeatures))
            if let b = l.bias {
                if l.biasGradient == nil { l.biasGradient = Tensor(shape: [b.count]) }
                slots.append(ParameterSlot(name: String(l.name.dropLast(7)) + ".bias", value: b.data,
                                           gradient: l.biasGradient!.data, count: b.count))
            }
        }
        for v in vectors {
            if v.gradient == nil { v.gradient = Tensor(shape: [v.value.count]) }
            slots.append(ParameterSlot(name: v.name, value: v.value.data, gradient: v.gradient!.data, count: v.value.count))
        }
        return slots
    }

    /// The A and B matrices of every attached LoRA adapter.
    public func loraParameters() -> [ParameterSlot] {
        linears.compactMap { l in l.lora.map { (l.name, $0) } }.flatMap { name, a in
            [ParameterSlot(name: name + ".lora_a", value: a.a.data, gradient: a.gradA.data, count: a.a.count),
             ParameterSlot(name: name + ".lora_b", value: a.b.data, gradient: a.gradB.data, count: a.b.count)]
        }
    }

    /// The element count a full fine-tune trains, and the bytes it needs beyond the mmap'd
    /// file: f32 weights, gradients, AdamW's two moments (16 bytes a parameter) plus
    /// activations for `tokens` rows per step.
    public func fullFineTuneBytes(tokensPerStep: Int) -> Int {
        parameterCount * 16 + activationBytes(tokensPerStep: tokensPerStep)
    }

    /// Peak activation memory of one step of `tokens` rows: the residual stream of every layer,
    /// one layer's activations and their gradients, and one logits chunk.
    public func activationBytes(tokensPerStep rows: Int, maxSequence: Int = 512) -> Int {
        let c = config
        let perRow = (c.layers + 1) * c.hiddenSize            // residuals
            + 2 * (6 * c.hiddenSize + 3 * c.qDim + 4 * c.kvDim + 6 * c.intermediateSize)  // one layer + grads
        let chunk = 2 * (1 << 24)                              // logits chunk (+ teacher)
        let attention = 2 * maxSequence * maxSequence * pool.threads
        return 4 * (rows * perRow + chunk + attention)
    }
}

/// Bytes the kernel would let this process allocate now (MemAvailable of /proc/meminfo).
public func availableMemoryBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
        let parts = line.split(separator: " ")
        if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
    }
    return nil
}

/// The slots cut into blocks of at most `size` elements (slot index, offset, count): the unit
/// of work the pool splits elementwise passes and reductions over. A reduction sums its
/// blocks' partials in this order, so its result does not depend on the thread count.
func slotBlocks(_ slots: [ParameterSlot], size: Int = 1 << 16) -> [(slot: Int, offset: Int, count: Int)] {
    var blocks: [(slot: Int, offset: Int, count: Int)] = []
    for (i, s) in slots.enumerated() {
        var o = 0
        while o < s.count { blocks.append((i, o, min(size, s.count - o))); o += size }
    }
    return blocks
}

/// ‖g‖₂ over every slot's gradient, in double (blocks over the pool, summed in order).
public func gradientNorm(_ slots: [ParameterSlot], pool: WorkerPool? = nil) -> Double {
    let blocks = slotBlocks(slots)
    var partial = [Double](repeating: 0, count: blocks.count)
    partial.withUnsafeMutableBufferPointer { out in
        nonisolated(unsafe) let o = out.baseAddress!
        let body: (Range<Int>) -> Void = { range in
            for b in range {
                let (i, off, n) = blocks[b]
                o[b] = tk_sum_squares(slots[i].gradient + off, n)
            }
        }
        if let pool { pool.parallelFor(blocks.count, body) } else { body(0..<blocks.count) }
    }
    return partial.reduce(0, +).squareRoot()
}

/// The factor clip_grad_norm_ multiplies gradients by for a total norm `total`: 1 when no
/// clipping is needed.
public func clipCoefficient(total: Double, maxNorm: Float) -> Float {
    let coef = Float(Double(maxNorm) / (total + 1e-6))
    return coef < 1 ? coef : 1
}

/// torch.nn.utils.clip_grad_norm_: scales every gradient by min(1, max/(‖g‖ + 1e-6)) and
/// returns the total norm before clipping. (Finetuner fuses the scaling into the optimizer
/// step instead: `Optimizer.step(lr:gradientScale:pool:)`.)
@discardableResult
public func clipGradientNorm(_ slots: [ParameterSlot], maxNorm: Float, pool: WorkerPool? = nil) -> Double {
    let total = gradientNorm(slots, pool: pool)
    let coef = clipCoefficient(total: total, maxNorm: maxNorm)
    if coef < 1 {
        for s in slots { for i in 0..<s.count { s.gradient[i] *= coef } }
    }
    return total
}

/// Optimizer state over a fixed list of slots.
public protocol Optimizer: AnyObject {
    var slots: [ParameterSlot] { get }
    /// Number of updates done.
    var stepCount: Int { get set }
    /// One update with learning rate `lr` from the slots' gradients.
    func step(lr: Float)
    /// One update from the gradients times `gradientScale` (gradient clipping fused into the
    /// update: the same float products clip_grad_norm_ writes back, without the pass that
    /// writes them; the gradient buffers are left unscaled), split over `pool`.
    func step(lr: Float, gradientScale: Float, pool: WorkerPool?)
    /// Named state tensors (for checkpoints).
    var state: [(String, Tensor)] { get }
}

/// torch.optim.AdamW (decoupled weight decay; single-tensor arithmetic order).
public final class AdamW: Optimizer {
    public let slots: [ParameterSlot]
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public var stepCount = 0
    let m: [Tensor]
    let v: [Tensor]

    public init(_ slots: [ParameterSlot], beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) {
        self.slots = slots
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = slots.map { Tensor(shape: [$0.count]) }
        v = slots.map { Tensor(shape: [$0.count]) }
    }

    public func step(lr: Float) { step(lr: lr, gradientScale: 1, pool: nil) }

    public func step(lr: Float, gradientScale: Float, pool: WorkerPool?) {
        stepCount += 1
        let t = Double(stepCount)
        let bc1 = 1 - pow(Double(beta1), t), bc2 = 1 - pow(Double(beta2), t)
        let stepSize = Float(Double(lr) / bc1), bc2Sqrt = Float(bc2.squareRoot())
        let blocks = slotBlocks(slots)
        let (slots, m, v) = (slots, m, v)
        let (beta1, beta2, eps, weightDecay) = (beta1, beta2, eps, weightDecay)
        let body: (Range<Int>) -> Void = { range in
            for b in range {
                let (i, o, n) = blocks[b], s = slots[i]
                tk_adamw_scaled(s.value + o, s.gradient + o, m[i].data + o, v[i].data + o, n, lr, beta1, beta2, eps,
                                s.decays ? weightDecay : 0, stepSize, bc2Sqrt, gradientScale)
            }
        }
        if let pool { pool.parallelFor(blocks.count, body) } else { body(0..<blocks.count) }
    }

    public var state: [(String, Tensor)] {
        slots.indices.flatMap { [("\(slots[$0].name).exp_avg", m[$0]), ("\(slots[$0].name).exp_avg_sq", v[$0])] }
    }
}

/// torch.optim.SGD with momentum (dampening 0) and L2 weight decay.
public final class SGD: Optimizer {
    public let slots: [ParameterSlot]
    public var momentum: Float, weightDecay: Float
    public var stepCount = 0
    let buffers: [Tensor]

    public init(_ slots: [ParameterSlot], momentum: Float = 0, weightDecay: Float = 0) {
        self.slots = slots
        self.momentum = momentum
        self.weightDecay = weightDecay
        buffers = slots.map { Tensor(shape: [$0.count]) }
    }

    public func step(lr: Float) { step(lr: lr, gradientScale: 1, pool: nil) }

    public func step(lr: Float, gradientScale: Float, pool: WorkerPool?) {
        for (i, s) in slots.enumerated() {
            let buf = buffers[i].data
            for j in 0..<s.count {
                var g = gradientScale == 1 ? s.gradient[j] : s.gradient[j] * gradientScale
                if weightDecay != 0 && s.decays { g += weightDecay * s.value[j] }
                if momentum != 0 {
                    buf[j] = stepCount == 0 ? g : momentum * buf[j] + g
                    g = buf[j]
                }
                s.value[j] -= lr * g
            }
        }
        stepCount += 1
    }

    public var state: [(String, Tensor)] {
        slots.indices.map { ("\(slots[$0].name).momentum_buffer", buffers[$0]) }
    }
}

/// Learning-rate schedules as transformers and torch define them; `rate(at:)` is the rate of
/// update number `step` (0-based).
public enum LearningRateSchedule: Sendable, Equatable {
    case constant(Float)
    /// transformers.get_linear_schedule_with_warmup: 0 → lr over `warmup` steps, then linearly to 0 at `total`.
    case linear(lr: Float, warmup: Int, total: Int)
    /// transformers.get_cosine_schedule_with_warmup (half a cosine to 0).
    case cosine(lr: Float, warmup: Int, total: Int)
    /// torch.optim.lr_scheduler.OneCycleLR, cosine annealing, two phases: maxLR/div → maxLR over
    /// pctStart·total steps, then → maxLR/div/finalDiv.
    case oneCycle(maxLR: Float, total: Int, pctStart: Double = 0.3, divFactor: Double = 25, finalDivFactor: Double = 1e4)

    public func rate(at step: Int) -> Float {
        switch self {
        case .constant(let lr):
            return lr
        case let .linear(lr, warmup, total):
            if step < warmup { return Float(Double(lr) * Double(step) / Double(max(1, warmup))) }
            return Float(Double(lr) * max(0, Double(total - step) / Double(max(1, total - warmup))))
        case let .cosine(lr, warmup, total):
            if step < warmup { return Float(Double(lr) * Double(step) / Double(max(1, warmup))) }
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return Float(Double(lr) * max(0, 0.5 * (1 + cos(Double.pi * progress))))
        case let .oneCycle(maxLR, total, pctStart, divFactor, finalDivFactor):
            let initial = Double(maxLR) / divFactor, minimum = initial / finalDivFactor
            let end0 = pctStart * Double(total) - 1, end1 = Double(total - 1)
            func anneal(_ start: Double, _ end: Double, _ pct: Double) -> Double {
                end + (start - end) / 2 * (cos(Double.pi * pct) + 1)
            }
            let s = Double(step)
            if s <= end0 { return Float(anneal(initial, Double(maxLR), s / end0)) }
            return Float(anneal(Double(maxLR), minimum, (s - end0) / (end1 - end0)))
        }
    }
}
