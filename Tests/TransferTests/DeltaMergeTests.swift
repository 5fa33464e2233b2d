import Foundation
import LanguageModel
import Testing
@testable import Transfer

/// Merge operators on hand-checkable 2×2 examples (the formulas of the TIES and DARE papers).
@Suite struct DeltaMergeTests {
    let t = "model.layers.0.self_attn.q_proj.weight"
    var shapes: [String: (rows: Int, cols: Int)] { [t: (2, 2)] }
    func delta(_ v: [Float], fp: String = "fp") -> Delta {
        Delta(entries: [t: [.dense(values: v)]], metadata: DeltaMetadata(modelFingerprint: fp, strategy: "s"))
    }
    func values(_ d: Delta) -> [Float] { d.entries[t]!.first!.densified(rows: 2, cols: 2) }

    @Test func weightedSum() throws {
        let m = try DeltaMerge.merge([delta([1, 2, 3, 4]), Delta(entries: [t: [.rows(indices: [1], values: [10, 20])]],
                                                                     metadata: DeltaMetadata(modelFingerprint: "fp", strategy: "r"))],
                                     weights: [0.5, 2], operator: .sum, shapes: shapes)
        #expect(values(m) == [0.5, 1, 21.5, 42])
        #expect(m.metadata.strategy == "merge-sum")
    }

    /// 1-D targets (a full fine-tune's norm weights and biases) merge too, and write as `[n]`.
    @Test func vectorTargetsMergeAndRoundTrip() throws {
        let norm = "model.norm.weight"
        let a = Delta(entries: [norm: [.dense(values: [1, 2, 3])]], metadata: DeltaMetadata(modelFingerprint: "fp", strategy: "a"))
        let b = Delta(entries: [norm: [.dense(values: [3, 2, 1])], t: [.dense(values: [1, 1, 1, 1])]],
                      metadata: DeltaMetadata(modelFingerprint: "fp", strategy: "b"))
        let m = try DeltaMerge.merge([a, b], weights: [1, 0.5], operator: .sum, shapes: shapes, vectors: [norm: 3])
        #expect(m.entries[norm] == [.dense(values: [2.5, 3, 3.5])])
        #expect(throws: TransferError.self) { try DeltaMerge.merge([a], operator: .sum, shapes: shapes) }
        let path = scratchDirectory("merge-vectors") + "/m.safetensors"
        try DeltaFile.write(m, shapes: shapes, vectors: [norm: 3], to: path)
        let back = try DeltaFile.read(path: path, targets: shapes, vectors: [norm: 3])
        #expect(back.entries[norm] == m.entries[norm])
        #expect(back.entries[t] == m.entries[t])
    }

    @Test func ties() throws {
        let a = delta([4, 1, 0.5, -3]), b = delta([-1, 0.2, -3, -2])
        let m = try DeltaMerge.merge([a, b], operator: .ties(density: 0.5), shapes: shapes)
        // a trimmed: [4, 0, 0, -3]; b trimmed: [0, 0, -3, -2]; totals [4, 0, -3, -5];
        // element 3 agrees in both: (-3 + -2) / 2.
        #expect(values(m) == [4, 0, -3, -2.5])
    }

    @Test func dareIsSeededAndUnbiasedInScale() throws {
        let a = delta([1, 1, 1, 1])
        let m1 = try DeltaMerge.merge([a], operator: .dare(drop: 0.5, seed: 42), shapes: shapes)
        let m2 = try DeltaMerge.merge([a], operator: .dare(drop: 0.5, seed: 42), shapes: shapes)
        #expect(values(m1) == values(m2))
        #expect(values(m1).allSatisfy { $0 == 0 || $0 == 2 })
        #expect(values(try DeltaMerge.merge([a], operator: .dare(drop: 0, seed: 1), shapes: shapes)) == [1, 1, 1, 1])
    }

    @Test func refusesMixedModelsAndBadParameters() {
        #expect(throws: TransferError.self) { try DeltaMerge.merge([delta([1, 1, 1, 1]), delta([1, 1, 1, 1], fp: "other")], operator: .sum, shapes: shapes) }
        #expect(throws: TransferError.self) { try DeltaMerge.merge([delta([1, 1, 1, 1])], operator: .ties(density: 0), shapes: shapes) }
        #expect(throws: TransferError.self) { try DeltaMerge.merge([delta([1, 1, 1, 1])], operator: .dare(drop: 1, seed: 0), shapes: shapes) }
        #expect(throws: TransferError.self) { try DeltaMerge.merge([delta([1, 1, 1, 1])], weights: [1, 2], operator: .sum, shapes: shapes) }
    }
}
