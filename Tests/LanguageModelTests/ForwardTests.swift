import Foundation
import LanguageModel
import TensorCore
import Testing

/// Logits against transformers (tools/gen_model_fixtures.py): f32 compute on the stored weights
/// in both, so only summation order differs.
let referenceModels = ["llama-tiny-f32", "llama-tiny-bf16", "llama3-tiny-f16", "qwen2-tiny-f32", "qwen2-tiny-bf16"]
let tolerance: Float = 1e-4
/// A bf16 KV cache rounds every key and value (relative error ≤ 2⁻⁹); over the fixtures' tiny
/// models the logits then move by up to 0.0096 (measured 2026-11-24: 0.0071–0.0096 across the
/// five models), so this bound leaves a margin of ~3×.
let bf16KVTolerance: Float = 3e-2
/// bf16 activations round every product's input rows (relative error ≤ 2⁻⁹); on the two bf16
/// fixtures the logits then move by up to 0.0139 (llama) and 0.0152 (qwen2) (measured
/// 2026-11-25), so this bound leaves a margin of ~3×.
let bf16ActivationTolerance: Float = 5e-2

@Suite(.serialized) struct ForwardTests {
    @Test(arguments: referenceModels)
    func prefillMatchesTransformers(name: String) throws {
        let (model, refs) = try loadReference(model: name)
        for ref in refs {
            let cache = model.makeCache()
            let out = try model.forward([ForwardInput(cache: cache, tokens: ref.tokens, logits: .all)])[0]
            #expect(out.count == ref.tokens.count)
            for (row, expected) in zip(out, ref.logits) {
                let diff = maxAbsDiff(row, expected)
                #expect(diff <= tolerance, "\(name): prefill max |Δlogit| \(diff)")
            }
        }
    }

    /// Prompts of different lengths prefilled together, then decoded one token per step in one
    /// batch; every step's logits match transformers and greedy picks its continuation.
    @Test(arguments: referenceModels)
    func batchedDecodeMatchesTransformers(name: String) throws {
        let (model, refs) = try loadReference(model: name)
        let caches = refs.map { _ in model.makeCache() }
        let prompts = zip(caches, refs).map { ForwardInput(cache: $0, tokens: Array($1.tokens[..<$1.promptLength])) }
        var last = try model.forward(prompts).map { $0[0] }   // logits after each sequence's newest token
        var position = refs.map(\.promptLength)
        var steps = 0
        while true {
            let active = refs.indices.filter { position[$0] < refs[$0].tokens.count }
            if active.isEmpty { break }
            for i in active {
                let diff = maxAbsDiff(last[i], refs[i].logits[position[i] - 1])
                #expect(diff <= tolerance, "\(name) seq \(i) pos \(position[i]): max |Δlogit| \(diff)")
                #expect(Sampler.argmax(last[i]) == refs[i].tokens[position[i]], "\(name) seq \(i): greedy token differs at \(position[i])")
            }
            let out = try model.forward(active.map { ForwardInput(cache: caches[$0], tokens: [refs[$0].tokens[position[$0]]]) })
            for (j, i) in active.enumerated() {
                last[i] = out[j][0]
                position[i] += 1
            }
            steps += 1
        }
        for i in refs.indices {
            #expect(maxAbsDiff(last[i], refs[i].logits[refs[i].tokens.count - 1]) <= tolerance)
            #expect(caches[i].count == refs[i].tokens.count)
        }
        #expect(steps == 8)
    }

    /// A bf16 KV cache: prompts prefilled together, then batched decode, every step's logits
    /// within `bf16KVTolerance` of transformers' f32 reference (the keys and values are rounded to
    /// bf16, nothing else changes).
    @Test(arguments: referenceModels)
    func bf16KVCacheStaysNearTransformers(name: String) throws {
        let (f32Model, refs) = try loadReference(model: name)
        let model = Model(weights: f32Model.weights, pool: f32Model.pool, kvCacheType: .bf16)
        let worst = try worstDeviation(model, refs, inspect: { caches in #expect(caches.allSatisfy { $0.type == .bf16 }) })
        #expect(worst <= bf16KVTolerance, "\(name): max |Δlogit| \(worst)")
        #expect(worst > tolerance, "\(name): the logits are the f32 cache's (max |Δlogit| \(worst)): were the keys rounded at all?")
    }

    /// bf16 activations (`--activations bf16`): every product with the bf16 weights takes its
    /// input rows rounded to bf16. Prompts prefilled together, then batched decode; every step's
    /// logits within `bf16ActivationTolerance` of transformers' f32 reference, and not equal to
    /// the f32 activations' (the rounding happened). The f32 models' products are unchanged.
    @Test(arguments: referenceModels)
    func bf16ActivationsStayNearTransformers(name: String) throws {
        let (f32Model, refs) = try loadReference(model: name)
        let model = Model(weights: f32Model.weights, pool: f32Model.pool, activations: .bf16)
        let worst = try worstDeviation(model, refs)
        if model.weights.layers[0].q.dtype == .bf16 {
            #expect(worst <= bf16ActivationTolerance, "\(name): max |Δlogit| \(worst)")
            #expect(worst > tolerance, "\(name): the logits are f32 activations' (max |Δlogit| \(worst)): were they rounded at all?")
        } else {
            #expect(worst <= tolerance, "\(name): \(model.weights.layers[0].q.dtype) weights, yet the logits moved by \(worst)")
        }
    }

    /// The largest |Δlogit| from transformers' reference over the fixture's prompts prefilled
    /// together (every position) and then decoded in one batch, one token per step.
    /// `inspect` sees the caches once made.
    private func worstDeviation(_ model: Model, _ refs: [ReferenceSequence], inspect: ([KVCache]) -> Void = { _ in }) throws -> Float {
        let caches = refs.map { _ in model.makeCache() }
        inspect(caches)
        var worst: Float = 0
        let prompts = zip(caches, refs).map { ForwardInput(cache: $0, tokens: Array($1.tokens[..<$1.promptLength]), logits: .all) }
        for (i, rows) in try model.forward(prompts).enumerated() {
            for (p, row) in rows.enumerated() { worst = max(worst, maxAbsDiff(row, refs[i].logits[p])) }
        }
        var position = refs.map(\.promptLength)
        while true {
            let active = refs.indices.filter { position[$0] < refs[$0].tokens.count }
            if active.isEmpty { break }
            let out = try model.forward(active.map { ForwardInput(cache: caches[$0], tokens: [refs[$0].tokens[position[$0]]]) })
            for (j, i) in active.enumerated() {
                worst = max(worst, maxAbsDiff(out[j][0], refs[i].logits[position[i]]))
                position[i] += 1
            }
        }
        return worst
    }

    /// A sequence's logits are bit-identical alone, in a batch with others, and with its
    /// prompt read in chunks (DESIGN.md, batch invariance), over an f32 or a bf16 KV cache and
    /// with f32 or bf16 activations.
    @Test(arguments: [("llama-tiny-bf16", KVCacheType.f32, ActivationType.f32), ("qwen2-tiny-f32", .f32, .f32),
                      ("llama-tiny-bf16", .bf16, .f32), ("qwen2-tiny-f32", .bf16, .f32),
                      ("llama-tiny-bf16", .f32, .bf16), ("qwen2-tiny-bf16", .bf16, .bf16)])
    func batchInvariance(name: String, kv: KVCacheType, activations: ActivationType) throws {
        let (reference, refs) = try loadReference(model: name)
        let model = Model(weights: reference.weights, pool: reference.pool, kvCacheType: kv, activations: activations)
        let target = refs[1].tokens
        // Alone, whole prompt.
        let alone = try model.forward([ForwardInput(cache: model.makeCache(), tokens: target, logits: .all)])[0]
        // Chunked 3 + 4 + rest.
        let chunkCache = model.makeCache()
        var chunked: [[Float]] = []
        for range in [0..<3, 3..<7, 7..<target.count] {
            chunked += try model.forward([ForwardInput(cache: chunkCache, tokens: Array(target[range]), logits: .all)])[0]
        }
        #expect(chunked == alone, "chunked prefill changed logits")
        // One token at a time, in a batch with two other sequences of other lengths; every third
        // step also with seven more, so that the step has enough rows for the per-row phases to
        // be split over the pool (Model.parallelRowThreshold; the pool has 2 threads).
        #expect(target.count >= Model.parallelRowThreshold, "the whole prompt alone is split too")
        let mine = model.makeCache()
        let others = [model.makeCache(), model.makeCache()]
        let crowd = (0..<7).map { _ in model.makeCache() }
        var batched: [[Float]] = []
        for (t, tok) in target.enumerated() {
            var inputs = [ForwardInput(cache: others[0], tokens: [refs[0].tokens[t % refs[0].tokens.count]]),
                          ForwardInput(cache: mine, tokens: [tok])]
            if t % 2 == 0 { inputs.append(ForwardInput(cache: others[1], tokens: Array(refs[2].tokens.prefix(1 + t % 3)))) }
            if t % 3 == 1 { inputs += crowd.enumerated().map { ForwardInput(cache: $1, tokens: [refs[$0 % refs.count].tokens[t % 4]]) } }
            batched.append(try model.forward(inputs)[1][0])
        }
        #expect(batched == alone, "decoding in a batch changed logits")
    }

    @Test func kernelsAgreeAcrossISAs() throws {
        // Every kernel family this CPU has gives the same logits to tolerance (they differ in
        // summation order only).
        let (model, refs) = try loadReference(model: "llama-tiny-bf16")
        defer { forceKernels(nil) }
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
            let out = try model.forward([ForwardInput(cache: model.makeCache(), tokens: refs[0].tokens, logits: .all)])[0]
            for (row, expected) in zip(out, refs[0].logits) {
                #expect(maxAbsDiff(row, expected) <= tolerance, "\(isa)")
            }
        }
    }
}
