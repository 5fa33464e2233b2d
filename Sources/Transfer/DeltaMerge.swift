import Foundation
import LanguageModel
import TensorCore

/// Operators that combine deltas made for one model into one (dense per touched tensor).
/// - `sum`: Σ wᵢ Δᵢ.
/// - `ties`: TIES-merging (Yadav et al. 2023, "Resolving Interference When Merging Models"):
///   trim each Δᵢ to its top `density` fraction by magnitude, elect each element's sign as the
///   sign of Σ wᵢ Δ̂ᵢ, and average the wᵢ Δ̂ᵢ that agree with it (disjoint mean).
/// - `dare`: DARE (Yu et al. 2023, "Language Models are Super Mario"): drop each element of
///   Δᵢ with probability `drop` (seeded), rescale survivors by 1/(1 − drop), then Σ wᵢ Δᵢ.
public enum DeltaMerge {
    public enum Operator: Sendable, Equatable {
        case sum
        case ties(density: Float)
        case dare(drop: Float, seed: UInt64)

        var name: String {
            switch self {
            case .sum: "sum"
            case .ties: "ties"
            case .dare: "dare"
            }
        }
    }

    public static func merge(_ deltas: [Delta], weights: [Float]? = nil, operator op: Operator,
                             shapes: [String: (rows: Int, cols: Int)], vectors: [String: Int] = [:]) throws -> Delta {
        guard let first = deltas.first else { throw TransferError.badEntry(tensor: "", "nothing to merge") }
        let w = weights ?? [Float](repeating: 1, count: deltas.count)
        guard w.count == deltas.count, w.allSatisfy(\.isFinite) else {
            throw TransferError.badEntry(tensor: "", "\(w.count) weights for \(deltas.count) deltas")
        }
        for d in deltas where d.metadata.modelFingerprint != first.metadata.modelFingerprint {
            throw TransferError.fingerprintMismatch(expected: first.metadata.modelFingerprint, found: d.metadata.modelFingerprint)
        }
        switch op {
        case .ties(let density) where !(density > 0 && density <= 1):
            throw TransferError.badEntry(tensor: "", "TIES density must be in (0, 1]")
        case .dare(let drop, _) where !(drop >= 0 && drop < 1):
            throw TransferError.badEntry(tensor: "", "DARE drop rate must be in [0, 1)")
        default: break
        }
        var rng = SplitMix64(seed: { if case .dare(_, let seed) = op { return seed } else { return 0 } }())
        var out: [String: [DeltaEntry]] = [:]
        let targets = Set(deltas.flatMap(\.entries.keys)).sorted()
        for target in targets {
            // 1-D targets (norm weights, biases: `vectors`) merge as one-row matrices.
            guard let (rows, cols) = shapes[target] ?? vectors[target].map({ (1, $0) }) else {
                throw TransferError.badEntry(tensor: target, "not a tensor of the target model a delta can touch")
            }
            let n = rows * cols
            // Each delta's Δ for this tensor, dense (zero where it does not touch it).
            var parts: [[Float]] = deltas.map { d in
                var acc = [Float](repeating: 0, count: n)
                for e in d.entries[target] ?? [] {
                    let v = e.densified(rows: rows, cols: cols)
                    for i in 0..<n { acc[i] += v[i] }
                }
                return acc
            }
            var merged = [Float](repeating: 0, count: n)
            switch op {
            case .sum:
                for (p, wi) in zip(parts, w) { for i in 0..<n { merged[i] += wi * p[i] } }
            case .dare(let drop, _):
                let keep = 1 - drop
                for (k, wi) in w.enumerated() {
                    for i in 0..<n where rng.nextUnitFloat() >= drop { merged[i] += wi * parts[k][i] / keep }
                }
            case .ties(let density):
                for k in parts.indices {
                    let keep = max(1, Int((Float(n) * density).rounded()))
                    if keep < n {
                        let threshold = parts[k].map(abs).sorted(by: >)[keep - 1]
                        var kept = 0
                        for i in 0..<n {
                            if abs(parts[k][i]) >= threshold && kept < keep { kept += 1 } else { parts[k][i] = 0 }
                        }
                    }
                }
                for i in 0..<n {
                    var total: Float = 0
                    for (k, wi) in w.enumerated() { total += wi * parts[k][i] }
                    guard total != 0 else { continue }
                    var sum: Float = 0, count = 0
                    for (k, wi) in w.enumerated() where parts[k][i] != 0 && (wi * parts[k][i] > 0) == (total > 0) {
                        sum += wi * parts[k][i]
                        count += 1
                    }
                    merged[i] = count > 0 ? sum / Float(count) : 0
                }
            }
            out[target] = [.dense(values: merged)]
        }
        var parameters: [String: Any] = ["operator": op.name, "weights": w.map(Double.init),
                                         "inputs": deltas.map(\.metadata.strategy)]
        switch op {
        case .sum: break
        case .ties(let density): parameters["density"] = Double(density)
        case .dare(let drop, let seed): parameters["drop"] = Double(drop); parameters["seed"] = seed
        }
        let text = (try? JSONSerialization.data(withJSONObject: parameters, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return Delta(entries: out, metadata: DeltaMetadata(modelFingerprint: first.metadata.modelFingerprint,
                                                           strategy: "merge-" + op.name, parameters: text))
    }
}
