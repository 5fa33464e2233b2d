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
