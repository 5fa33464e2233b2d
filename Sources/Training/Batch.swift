/// One training sequence: tokens and Hugging Face-style labels aligned with them (-100 =
/// ignored; position t's logits predict `labels[t + 1]`, the shift transformers applies).
/// A loss mask (answer tokens only) is labels of -100 on the prompt.
public struct TrainingSequence: Sendable, Equatable {
    public var tokens: [Int]
    public var labels: [Int]

    public static let ignoreIndex = -100

    public init(tokens: [Int], labels: [Int]) {
        self.tokens = tokens
        self.labels = labels
    }

    /// Loss on every token after the first.
    public init(tokens: [Int]) {
        self.init(tokens: tokens, labels: tokens)
    }

    /// Loss on the completion only (instruction tuning).
    public init(prompt: [Int], completion: [Int]) {
        self.init(tokens: prompt + completion,
                  labels: Array(repeating: Self.ignoreIndex, count: prompt.count) + completion)
    }

    /// Number of positions that carry a loss.
    public var lossTokens: Int { labels.dropFirst().filter { $0 != Self.ignoreIndex }.count }
}

/// A batch of sequences of any lengths. Sequences are not padded in memory: every row is a
/// real token, and attention runs per sequence, which is what a right-padded batch with an
/// attention mask computes in transformers.
public struct TrainingBatch: Sendable {
    public var sequences: [TrainingSequence]

    public init(_ sequences: [TrainingSequence]) {
        self.sequences = sequences
    }

    /// From a padded batch as transformers takes it: `inputIDs`, `attentionMask` (1 = real
    /// token) and `labels` (-100 = no loss). Padding must be on the right (left padding shifts
    /// position ids in transformers' training forward, which this engine does not mimic).
    public init(inputIDs: [[Int]], attentionMask: [[Int]], labels: [[Int]]) throws {
        guard inputIDs.count == attentionMask.count, inputIDs.count == labels.count else {
            throw TrainingError.invalidBatch("input_ids, attention_mask and labels have different batch sizes")
        }
        var out: [TrainingSequence] = []
        for (i, ids) in inputIDs.enumerated() {
            let mask = attentionMask[i]
            guard mask.count == ids.count, labels[i].count == ids.count else {
                throw TrainingError.invalidBatch("row \(i): input_ids, attention_mask and labels differ in length")
            }
            let n = mask.firstIndex(of: 0) ?? mask.count
            guard mask[n...].allSatisfy({ $0 == 0 }) else {
                throw TrainingError.invalidBatch("row \(i): only right padding is supported")
            }
            out.append(TrainingSequence(tokens: Array(ids[..<n]), labels: Array(labels[i][..<n])))
        }
        sequences = out
    }

    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.tokens.count } }
    public var lossTokens: Int { sequences.reduce(0) { $0 + $1.lossTokens } }
}

/// What the loss compares the model's next-token distribution with.
public enum Objective {
    /// Cross-entropy with the labels.
    case crossEntropy
    /// Token-level distillation at the label positions, with the teacher's logits computed
    /// on the fly (the teacher shares the vocabulary).
    case distillation(teacher: TrainingModel, divergence: Divergence, temperature: Float = 1)
}

/// Divergences between the student's p_S and the teacher's p_T (TRL's GKD conventions).
public enum Divergence: Sendable, Equatable {
    /// KL(p_T ‖ p_S): supervised KD.
    case forwardKL
    /// KL(p_S ‖ p_T).
    case reverseKL
    /// Generalized JSD with β (TRL `generalized_jsd_loss`): β = 0 is forward KL, β = 1 reverse
    /// KL, otherwise β·KL(p_T ‖ m) + (1 − β)·KL(p_S ‖ m), m = β·p_T + (1 − β)·p_S.
    case generalizedJSD(beta: Float)
}

/// A loss over a batch: `loss = sum / normalizer`, `tokens` rows carried it.
public struct LossResult: Sendable, Equatable {
    public var loss: Double
    public var sum: Double
    public var tokens: Int
}
