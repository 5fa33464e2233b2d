import Foundation
import LanguageModel
import SafeTensors
import TensorCore
import Testing

/// Reads a delta file in DESIGN.md's layout (test-local: the Transfer layer owns the real reader).
private func readDelta(_ path: String) throws -> [String: [DeltaEntry]] {
    let file = try SafeTensorsFile(path: path)
    func floats(_ name: String) throws -> [Float] {
        let info = try file.info(name), data = try file.data(name)
        return (0..<info.elementCount).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
    }
    func ints(_ name: String) throws -> [Int] {
        let info = try file.info(name), data = try file.data(name)
        return (0..<info.elementCount).map { Int(data.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
    }
    let scale = Float(file.metadata["lora_scale"] ?? "1") ?? 1
    var out: [String: [DeltaEntry]] = [:]
    for name in file.names {
        if name.hasSuffix(".dense") {
            out[String(name.dropLast(6)), default: []].append(.dense(values: try floats(name)))
        } else if name.hasSuffix(".rows") {
            let t = String(name.dropLast(5))
            out[t, default: []].append(.rows(indices: try ints(name), values: try floats(t + ".row_values")))
        } else if name.hasSuffix(".cols") {
            let t = String(name.dropLast(5))
            out[t, default: []].append(.columns(indices: try ints(name), values: try floats(t + ".col_values")))
        } else if name.hasSuffix(".lora_a") {
            let t = String(name.dropLast(7))
            let rank = try file.info(name).shape[0]
            out[t, default: []].append(.lowRank(a: try floats(name), b: try floats(t + ".lora_b"), rank: rank, scale: scale))
        }
    }
    return out
}

private struct VariantFixture {
    let model: Model
    let prompts: [[Int]]
    let expected: SafeTensorsFile
    let dir: String

    init(_ base: String) throws {
        dir = fixturesDirectory + "/variants/" + base
        model = try Model.load(directory: fixturesDirectory + "/models/" + base, pool: WorkerPool(threads: 2))
        expected = try SafeTensorsFile(path: dir + "/expected.safetensors")
        prompts = try JSONDecoder().decode([[Int]].self, from: Data((expected.metadata["prompts"] ?? "[]").utf8))
    }

    func variant(_ delta: String, mode: VariantMode = .unmerged, valueType: DeltaValueType = .f32) throws -> Variant {
        try Variant(name: delta, weights: model.weights, deltas: try readDelta(dir + "/\(delta).safetensors"), mode: mode, valueType: valueType)
    }

    /// transformers' logits of prompt i on W + Δ (`logits`), or on W + Δ with Δ's 2-D values
    /// rounded to bf16 first (`logits_bf16`).
    func reference(_ delta: String, _ i: Int, key: String = "logits") throws -> [[Float]] {
        let info = try expected.info("\(key).\(delta).\(i)"), data = try expected.data("\(key).\(delta).\(i)")
        let vocab = info.shape[1]
        return (0..<info.shape[0]).map { r in (0..<vocab).map { data.loadUnaligned(fromByteOffset: (r * vocab + $0) * 4, as: Float.self) } }
    }
}

@Suite struct VariantTests {
    /// Dense, row-sparse, column-sparse and low-rank deltas on the layers' matrices (delta-a,
    /// delta-b), and on the embedding, the lm head, norm weights and biases (delta-c), unmerged
    /// and merged, against transformers running W + Δ: with the values held in f32, within 1e-4
    /// of W + Δ; held in bf16, within 1e-4 of W + bf16(Δ).
    @Test(arguments: ["llama-tiny-f32", "qwen2-tiny-bf16"], [VariantMode.unmerged, .merged])
    func variantLogitsMatchTransformers(base: String, mode: VariantMode) throws {
        let f = try VariantFixture(base)
        for (delta, valueType) in [("delta-a", DeltaValueType.f32), ("delta-b", .f32), ("delta-c", .f32),
                                   ("delta-a", .bf16), ("delta-b", .bf16), ("delta-c", .bf16)] {
            // Merged layer matrices are f32 copies of W + Δ whatever the value type.
            let key = valueType == .bf16 && (mode == .unmerged || delta == "delta-c") ? "logits_bf16" : "logits"
            let variant = try f.variant(delta, mode: mode, valueType: valueType)
            for (i, prompt) in f.prompts.enumerated() {
                let out = try f.model.forward([ForwardInput(cache: f.model.makeCache(), tokens: prompt, logits: .all, variant: variant)])[0]
                let ref = try f.reference(delta, i, key: key)
                #expect(out.count == ref.count)
                for (row, expected) in zip(out, ref) {
                    let diff = maxAbsDiff(row, expected)
                    #expect(diff <= 1e-4, "\(base) \(delta) \(mode) \(valueType) prompt \(i): max |Δlogit| \(diff)")
                }
                // The variant must actually change something.
                let baseOut = try f.model.forward([ForwardInput(cache: f.model.makeCache(), tokens: prompt, logits: .last)])[0][0]
                #expect(maxAbsDiff(baseOut, ref.last!) > 1e-3)
            }
        }
    }

    /// One step mixing base and variants (unmerged in f32 and bf16, merged, one touching the
    /// embedding, lm head, norms and biases), a variant's sequences apart from each other: each
    /// sequence gets bit-identical logits to running alone.
    @Test(arguments: ["llama-tiny-f32", "qwen2-tiny-bf16"])
    func batchMixingBaseAndVariants(base: String) throws {
        let f = try VariantFixture(base)
        let a = try f.variant("delta-a"), b = try f.variant("delta-b", mode: .merged)
        let c = try f.variant("delta-c", valueType: .bf16), a16 = try f.variant("delta-a", valueType: .bf16)
        let p = f.prompts[1]
        func alone(_ v: Variant?) throws -> [[Float]] {
            try f.model.forward([ForwardInput(cache: f.model.makeCache(), tokens: p, logits: .all, variant: v)])[0]
        }
        let order: [Variant?] = [a, nil, c, b, a, a16, c, nil, a16]
        let mixed = try f.model.forward(order.map { ForwardInput(cache: f.model.makeCache(), tokens: p, logits: .all, variant: $0) })
        for (i, v) in order.enumerated() {
            #expect(mixed[i] == (try alone(v)), "\(base) sequence \(i) (\(v?.name ?? "base"))")
        }
        // Decode steps too: one token each after the prompts above.
        let caches = order.map { _ in f.model.makeCache() }
        _ = try f.model.forward(zip(caches, order).map { ForwardInput(cache: $0, tokens: p, logits: .none, variant: $1) })
        let step = try f.model.forward(zip(caches, order).map { ForwardInput(cache: $0, tokens: [7], variant: $1) })
        for (i, v) in order.enumerated() {
            let cache = f.model.makeCache()
            _ = try f.model.forward([ForwardInput(cache: cache, tokens: p, logits: .none, variant: v)])
            #expect(step[i] == (try f.model.forward([ForwardInput(cache: cache, tokens: [7], variant: v)])[0]), "\(base) decode \(i)")
        }
        // And each matches transformers.
        let refA = try f.reference("delta-a", 1), refB = try f.reference("delta-b", 1)
        let refC = try f.reference("delta-c", 1, key: "logits_bf16")
        #expect(zip(mixed[0], refA).allSatisfy { maxAbsDiff($0, $1) <= 1e-4 })
        #expect(zip(mixed[3], refB).allSatisfy { maxAbsDiff($0, $1) <= 1e-4 })
        #expect(zip(mixed[2], refC).allSatisfy { maxAbsDiff($0, $1) <= 1e-4 })
    }

    @Test func invalidDeltasAreRejected() throws {
        let f = try VariantFixture("llama-tiny-f32")
        let cases: [(String, [String: [DeltaEntry]], String)] = [
            ("unknown name", ["model.layers.0.mlp.nope.weight": [.dense(values: [1])]], "not a delta target"),
            ("layer out of range", ["model.layers.9.mlp.up_proj.weight": [.rows(indices: [0], values: [Float](repeating: 0, count: 64))]], "not a delta target"),
            ("wrong dense size", ["model.layers.0.mlp.up_proj.weight": [.dense(values: [1, 2, 3])]], "dense delta"),
            ("row out of range", ["model.layers.0.mlp.up_proj.weight": [.rows(indices: [160], values: [Float](repeating: 0, count: 64))]], "row index"),
            ("repeated rows", ["model.layers.0.mlp.up_proj.weight": [.rows(indices: [1, 1], values: [Float](repeating: 0, count: 128))]], "repeat"),
            ("NaN", ["model.layers.0.mlp.up_proj.weight": [.rows(indices: [1], values: [Float](repeating: .nan, count: 64))]], "NaN"),
            ("bad rank", ["model.layers.0.self_attn.q_proj.weight": [.lowRank(a: [1], b: [1], rank: 1, scale: 1)]], "lora_a"),
            ("rows on a norm", ["model.norm.weight": [.rows(indices: [0], values: [1])]], "only dense"),
            ("norm length", ["model.layers.1.input_layernorm.weight": [.dense(values: [1, 2])]], "dense delta has 2 values"),
            ("bias of a model without", ["model.layers.0.self_attn.q_proj.bias": [.dense(values: [Float](repeating: 0, count: 64))]], "no attention biases"),
            ("NaN in a norm", ["model.norm.weight": [.dense(values: [Float](repeating: .infinity, count: 64))]], "NaN or infinite"),
            ("embedding shape", ["model.embed_tokens.weight": [.rows(indices: [256], values: [Float](repeating: 0, count: 64))]], "row index"),
        ]
        for (label, deltas, message) in cases {
            do {
                _ = try Variant(name: label, weights: f.model.weights, deltas: deltas)
                Issue.record("\(label): accepted")
            } catch {
                #expect("\(error)".contains(message), "\(label): \(error)")
            }
        }
    }

    @Test func residentBytesAreTheDeltasNotAModelCopy() throws {
        let f = try VariantFixture("llama-tiny-f32")
        let b = try f.variant("delta-b")
        #expect(b.residentBytes == 2 * (3 * 4 + 3 * 64 * 4), "i32 indices, f32 values")
        #expect(try f.variant("delta-b", valueType: .bf16).residentBytes == 2 * (3 * 4 + 3 * 64 * 2), "i32 indices, bf16 values")
        #expect(try f.variant("delta-b", valueType: .auto).valueType == .f32, "auto keeps an f32 base's deltas in f32")
        #expect(try VariantFixture("qwen2-tiny-bf16").variant("delta-b", valueType: .auto).valueType == .bf16)
        let merged = try f.variant("delta-b", mode: .merged)
        #expect(merged.residentBytes == 2 * 160 * 64 * 4, "two merged f32 copies of up_proj")
    }
}

@Suite struct TiedHeadVariantTests {
    /// In a model whose lm head is the embedding, a delta names the embedding (and changes
    /// both); `lm_head.weight` is refused with that hint.
    @Test func tiedLMHeadIsReachedThroughTheEmbedding() throws {
        let model = try Model.load(directory: fixturesDirectory + "/models/qwen2-tiny-f32", pool: WorkerPool(threads: 1))
        #expect(!model.weights.hasSeparateLMHead)
        let d = model.config.hiddenSize
        let rows: [Float] = (0..<d).map { Float($0 % 7) * 0.05 - 0.15 }
        do {
            _ = try Variant(name: "head", weights: model.weights, deltas: ["lm_head.weight": [.rows(indices: [5], values: rows)]])
            Issue.record("lm_head.weight of a tied model was accepted")
        } catch {
            #expect("\(error)".contains("put the delta on model.embed_tokens.weight"), "\(error)")
        }
        // On the embedding, row 5 moves both the input embedding of token 5 and logit 5.
        let v = try Variant(name: "embed", weights: model.weights, deltas: ["model.embed_tokens.weight": [.rows(indices: [5], values: rows)]])
        let tokens = [3, 9, 4]
        let base = try model.forward([ForwardInput(cache: model.makeCache(), tokens: tokens)])[0][0]
        let with = try model.forward([ForwardInput(cache: model.makeCache(), tokens: tokens, variant: v)])[0][0]
        #expect(base[5] != with[5], "the tied head's row 5 changed")
        #expect(zip(base, with).enumerated().allSatisfy { $0.offset == 5 || $0.element.0 == $0.element.1 },
                "tokens 3, 9, 4 do not read embedding row 5: only logit 5 moves")
    }
}
