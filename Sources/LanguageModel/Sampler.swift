import Foundation
import TensorCore

/// Sampling settings, named as in the OpenAI API and transformers' GenerationConfig.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0 means greedy.
    public var temperature: Float = 0
    public var topK: Int = 0            // 0: off
    public var topP: Float = 1          // 1: off
    public var minP: Float = 0          // 0: off
    public var repetitionPenalty: Float = 1
    public var seed: UInt64? = nil
    public var maxTokens: Int = 256
    public var stopStrings: [String] = []
    public var stopTokens: [Int] = []

    public init() {}

    public var isGreedy: Bool { temperature <= 0 }
}

/// Picks the next token from logits. Greedy ties go to the lowest token id, as `torch.argmax`
/// does, so greedy text is reproducible against transformers.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    /// Index of the largest value; the first one on ties. NaN never wins.
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for (i, v) in logits.enumerated() where v > bestValue {
            best = i
            bestValue = v
        }
        return best
    }

    /// In transformers: RepetitionPenaltyLogitsProcessor (divide positive logits, multiply negative).
    public static func applyRepetitionPenalty(_ logits: inout [Float], history: [Int], penalty: Float) {
        guard penalty != 1 else { return }
        for id in Set(history) where id >= 0 && id < logits.count {
            let v = logits[id]
            logits[id] = v > 0 ? v / penalty : v * penalty
        }
    }

    public mutating func sample(_ input: [Float], history: [Int] = []) -> Int {
        var logits = input
        Self.applyRepetitionPenalty(&logits, history: history, penalty: parameters.repetitionPenalty)
        if parameters.isGreedy { return Self.argmax(logits) }

        // Temperature, then top-k, top-p and min-p over the softmax, as transformers' warpers do.
        let t = parameters.temperature
        var candidates = logits.enumerated().filter { $0.element.isFinite }.map { (id: $0.offset, logit: $0.element / t) }
        guard !candidates.isEmpty else { return Self.argmax(logits) }
        candidates.sort { $0.logit != $1.logit ? $0.logit > $1.logit : $0.id < $1.id }
        if parameters.topK > 0 && parameters.topK < candidates.count {
            candidates.removeLast(candidates.count - parameters.topK)
        }
        let maxLogit = candidates[0].logit
        var probs = candidates.map { expf($0.logit - maxLogit) }
        var sum = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= sum }
        var keep = probs.count
        if parameters.topP < 1 {
            var cumulative: Float = 0
            for (i, p) in probs.enumerated() {
                cumulative += p
                if cumulative >= parameters.topP { keep = i + 1; break }
            }
        }
        if parameters.minP > 0 {
            let threshold = parameters.minP * probs[0]
            keep = min(keep, max(1, probs.prefix(keep).filter { $0 >= threshold }.count))
        }
        probs = Array(probs.prefix(keep))
        sum = probs.reduce(0, +)
        let u = rng.nextUnitFloat() * sum
        var acc: Float = 0
        for (i, p) in probs.enumerated() {
            acc += p
            if u < acc { return candidates[i].id }
        }
        return candidates[keep - 1].id
    }
}

/// log-softmax of a logits row (f64 accumulation) for log-probs.
public func logSoftmax(_ logits: [Float]) -> [Float] {
    let m = logits.max() ?? 0
    var s = 0.0
    for v in logits { s += Foundation.exp(Double(v - m)) }
    let lse = Float(Foundation.log(s)) + m
    return logits.map { $0 - lse }
}
