import Foundation
import SafeTensors
import TensorCore

/// Which positions of a forward input need logits.
public enum LogitsRequest: Sendable, Equatable {
    case none
    case last
    case all
}

/// One sequence's share of a forward step: new tokens appended to its KV cache. A prefill
/// chunk and a decode token are the same thing with different lengths, so one step can mix
/// prompts being read and sequences being decoded.
public struct ForwardInput {
    public let cache: KVCache
    public let tokens: [Int]
    public let logits: LogitsRequest
    /// The weights this sequence runs on: nil is the base model.
    public let variant: Variant?

    public init(cache: KVCache, tokens: [Int], logits: LogitsRequest = .last, variant: Variant? = nil) {
        self.cache = cache
        self.tokens = tokens
        self.logits = logits
        self.variant = variant
    }
}

/// A Llama/Qwen2 decoder over memory-mapped weights. Forward runs every new token of every
/// sequence in the step through each weight matrix once (batched), and attention per sequence
/// over its own cache. Logits of a token never depend on its companions in the step, on the
/// step's size or on how its prompt was chunked: the matmul kernels reduce each element in a
/// fixed order and attention is computed per token (DESIGN.md, batch invariance).
public final class Model: @unchecked Sendable {
    public let config: ModelConfig
    public let weights: ModelWeights
    public let pool: WorkerPool
    /// cos/sin tables of RoPE, [position][headDim/2], computed up to the context length on demand.
    private var ropeCos: [Float] = []
    private var ropeSin: [Float] = []
    private let inverseFrequencies: [Float]
    private let ropeLock = NSLock()
    /// Working memory of the unmerged-delta path, reused from step to step (forward holds
    /// `scratchLock`: one step at a time uses it).
    private let scratch = Scratch()
    private let scratchLock = NSLock()
    /// When set, `forward` charges its time to phases here (benchmarks: `graft bench --profile`).
    public var profile: ForwardProfile?
    /// The element type of the caches `makeCache` makes (`--kv-cache-dtype`).
    public let kvCacheType: KVCacheType
    /// What the products with bf16 weight matrices take as activations (`--activations`): f32
    /// (the default), or rounded to bf16 for AVX-512 BF16's dot products (ActivationType). The
    /// unmerged deltas of variants (f32) are unaffected.
    public let activations: ActivationType

    public init(weights: ModelWeights, pool: WorkerPool, kvCacheType: KVCacheType = .f32, activations: ActivationType = .f32) {
        self.config = weights.config
        self.weights = weights
        self.pool = pool
        self.kvCacheType = kvCacheType
        self.activations = activations
        self.inverseFrequencies = weights.config.rope.inverseFrequencies(headDim: weights.config.headDim).map { Float($0) }
    }

    /// Opens a Hugging Face model folder: config.json and model.safetensors (or shards).
    public static func load(directory: String, pool: WorkerPool = WorkerPool(), kvCacheType: KVCacheType = .f32,
                            activations: ActivationType = .f32) throws -> Model {
        let config = try ModelConfig.load(directory: directory)
        let storage = try SafeTensorsModel(directory: directory)
        return Model(weights: try ModelWeights(config: config, storage: storage), pool: pool, kvCacheType: kvCacheType,
                     activations: activations)
    }

    /// Why `activations` will not pay off here, if it will not: bf16 activations with no bf16
    /// weights to apply to, or on a CPU without AVX-512 BF16 (emulated, slower than f32).
    public var activationWarning: String? {
        guard activations == .bf16 else { return nil }
        if weights.layers.first?.q.dtype != .bf16 {
            return "--activations bf16 changes only products with bf16 weights; this model's are \(weights.layers.first?.q.dtype.rawValue ?? "absent")"
        }
        if bf16ActivationPath != .dpbf16 {
            return "this CPU lacks AVX-512 BF16: bf16 activations are emulated (\(bf16ActivationPath.rawValue)), slower than f32"
        }
        return nil
    }

    /// A new empty cache for one sequence of at most `maxTokens` positions, of `type` (default:
    /// the model's `kvCacheType`).
    public func makeCache(maxTokens: Int? = nil, type: KVCacheType? = nil) -> KVCache {
        KVCache(layers: config.layers, kvDim: config.kvDim,
                maxTokens: min(maxTokens ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings),
                type: type ?? kvCacheType)
    }

    private func ensureRope(upTo positions: Int) {
        ropeLock.lock()
        defer { ropeLock.unlock() }
        let half = config.headDim / 2
        let have = ropeCos.count / max(half, 1)
        guard positions > have else { return }
        let target = max(positions, have * 2, 256)
        ropeCos.reserveCapacity(target * half)
        ropeSin.reserveCapacity(target * half)
        for p in have..<target {
            for i in 0..<half {
                // In PyTorch: freqs = inv_freq.float() @ position_ids.float(); cos(), sin() in f32.
                let angle = Double(inverseFrequencies[i] * Float(p))
                ropeCos.append(Float(cos(angle)))
                ropeSin.append(Float(sin(angle)))
            }
        }
    }

    /// Runs one step. Returns, per input, its logits rows: none, the last token's, or one per
    /// new token, each `vocabSize` floats. `trace` observes the intermediate values (nil: no cost).
    public func forward(_ inputs: [ForwardInput], trace: ForwardTrace? = nil) throws -> [[[Float]]] {
        scratchLock.lock()
        defer { scratchLock.unlock() }
        let prof = profile
        prof?.begin()
        let c = config
        let d = c.hiddenSize, qDim = c.qDim, kvDim = c.kvDim, f = c.intermediateSize
        let hd = c.headDim, half = hd / 2
        let groups = c.heads / c.kvHeads

        // Flatten the step into rows: row t belongs to sequence seq[t] at position pos[t].
        var seqOf: [Int] = [], posOf: [Int] = []
        for (s, input) in inputs.enumerated() {
            let start = input.cache.count
            try input.cache.reserve(start + input.tokens.count)
            for (j, tok) in input.tokens.enumerated() {
                guard tok >= 0 && tok < c.vocabSize else { throw ModelError.invalidToken(tok, vocabSize: c.vocabSize) }
                seqOf.append(s)
                posOf.append(start + j)
            }
        }
        let rows = seqOf.count
        guard rows > 0 else { return inputs.map { _ in [] } }
        ensureRope(upTo: (posOf.max() ?? 0) + 1)
        let caches = inputs.map(\.cache)
        var segments: [Segment] = []
        var row = 0
        for input in inputs {
            segments.append(Segment(rows: row..<(row + input.tokens.count), variant: input.variant))
            row += input.tokens.count
        }

        let x = alignedFloats(rows * d)      // residual stream
        let h = alignedFloats(rows * d)      // normed
        let q = alignedFloats(rows * qDim)
        let k = alignedFloats(rows * kvDim)
        let v = alignedFloats(rows * kvDim)
        let att = alignedFloats(rows * qDim)
        let gate = alignedFloats(rows * f)
        let up = alignedFloats(rows * f)
        let tmp = alignedFloats(rows * d)
        defer { for p in [x, h, q, k, v, att, gate, up, tmp] { p.deallocate() } }

        let kvPrefetch = caches.reduce(0) { $0 + $1.filledBytesPerLayer } <= Self.kvPrefetchBytes
        prof?.mark(.setup)
        var t = 0
        for input in inputs {
            let entries = input.variant?.embedding ?? []
            for tok in input.tokens {
                weights.embed.widenRow(tok, into: x + t * d)
                for e in entries { e.addRow(tok, into: x + t * d, cols: d, scratch: scratch.buffer(0, count: d)) }
                t += 1
            }
        }
        prof?.mark(.embed)

        ropeCos.withUnsafeBufferPointer { cosTable in
            ropeSin.withUnsafeBufferPointer { sinTable in
                for (li, layer) in weights.layers.enumerated() {
                    trace?.residualPreAttention?(li, x)
                    // a = x + o·Attn(q, k, v)(norm1(x))
                    normalize(h, x, segments: segments, base: layer.attnNorm) { $0.vectors.attnNorm[li] }
                    prof?.mark(.norms)
                    // The layer's cached keys and values were last touched a whole step ago: ask for
                    // them now, when they fit in L2 with room to spare, so that attention finds them
                    // there after the q/k/v projections.
                    if kvPrefetch { for cache in caches { cache.prefetch(layer: li) } }
                    project(q, ldo: qDim, h, ldx: d, layer: li, .q, segments: segments, next: layer.matrix(.k))
                    prof?.mark(.q)
                    project(k, ldo: kvDim, h, ldx: d, layer: li, .k, segments: segments, next: layer.matrix(.v))
                    prof?.mark(.k)
                    project(v, ldo: kvDim, h, ldx: d, layer: li, .v, segments: segments, next: layer.matrix(.o))
                    prof?.mark(.v)
                    if let baseQ = layer.qBias, let baseK = layer.kBias, let baseV = layer.vBias {
                        for segment in segments {
                            let vv = segment.variant?.vectors
                            let qb = vv?.qBias[li] ?? baseQ, kb = vv?.kBias[li] ?? baseK, vb = vv?.vBias[li] ?? baseV
                            for r in segment.rows {
                                for i in 0..<qDim { q[r * qDim + i] += qb[i] }
                                for i in 0..<kvDim { k[r * kvDim + i] += kb[i]; v[r * kvDim + i] += vb[i] }
                            }
                        }
                    }
                    // RoPE, rotate_half convention: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin).
                    // Each row writes its own (sequence, position) of the caches.
                    forRows(rows) { range in
                        for r in range {
                            let cs = cosTable.baseAddress! + posOf[r] * half
                            let sn = sinTable.baseAddress! + posOf[r] * half
                            rope(q + r * qDim, heads: c.heads, headDim: hd, cos: cs, sin: sn)
                            rope(k + r * kvDim, heads: c.kvHeads, headDim: hd, cos: cs, sin: sn)
                            caches[seqOf[r]].store(layer: li, position: posOf[r], key: k + r * kvDim, value: v + r * kvDim)
                        }
                    }
                    prof?.mark(.ropeCache)
                    // Causal attention of each new token over its own sequence's cache.
                    let scale = 1 / Float(hd).squareRoot()
                    let posCopy = posOf, seqCopy = seqOf
                    nonisolated(unsafe) let (qp, ap) = (q, att)
                    let traceWeights = trace?.attentionWeights
                    let maxN = (posCopy.max() ?? 0) + 1
                    // One job per (row, key/value head): the group's query heads share its cache
                    // rows (attendGroup reads them once for up to 4 heads; each head's results are
                    // attend's), and each job asks for its share of the next row's cache (another
                    // sequence's) meanwhile. SmolLM2 at batch 16, 1 thread (graft bench --profile,
                    // two alternating runs): attention 7.8-8.2 -> 5.3-6.6 ms a step, the step 45.8-45.9
                    // -> 44.4-44.8 ms (f32 activations), 28.6-28.7 -> 27.4-28.3 (bf16); at 2 threads
                    // 3.9-4.6 -> 3.3-4.0 ms. Batch 1 equal (0.41-0.47 against 0.44-0.45 ms). Grouping
                    // alone, without the next row's prefetch, was slower at batch 16 (7.5-7.7 ->
                    // 8.4-9.0 ms: the caches come from DRAM there, and one job covers fewer keys at a
                    // time); alone on cached rows it is 20-25% faster.
                    pool.parallelFor(rows * c.kvHeads) { range in
                        let sc = UnsafeMutablePointer<Float>.allocate(capacity: groups * maxN)
                        defer { sc.deallocate() }
                        for job in range {
                            let r = job / c.kvHeads, g = job % c.kvHeads
                            let cache = caches[seqCopy[r]]
                            let n = posCopy[r] + 1
                            let o = ap + r * qDim + g * groups * hd, queries = UnsafePointer(qp + r * qDim + g * groups * hd)
                            var next: (keys: UnsafeRawPointer, values: UnsafeRawPointer, bytes: Int)?
                            if r + 1 < seqCopy.count, seqCopy[r + 1] != seqCopy[r] {
                                let (k, v, bytes) = caches[seqCopy[r + 1]].filled(layer: li)
                                let b0 = bytes * g / c.kvHeads, b1 = bytes * (g + 1) / c.kvHeads
                                next = (k + b0, v + b0, b1 - b0)
                            }
                            switch cache.type {
                            case .f32:
                                attendGroup(o, queries: queries, heads: groups, keys: cache.keys(layer: li) + g * hd,
                                            values: cache.values(layer: li) + g * hd, stride: kvDim, count: n, headDim: hd,
                                            scale: scale, scratch: sc, next: next)
                            case .bf16:
                                attendGroupBF16(o, queries: queries, heads: groups, keys: cache.keysBF16(layer: li) + g * hd,
                                                values: cache.valuesBF16(layer: li) + g * hd, stride: kvDim, count: n, headDim: hd,
                                                scale: scale, scratch: sc, next: next)
                            }
                            // The scratch holds the group's heads' normalised weights, n apart.
                            if let traceWeights {
                                for i in 0..<groups { traceWeights(li, r, g * groups + i, sc + i * n, n) }
                            }
                        }
                    }
                    prof?.mark(.attention)
                    trace?.attentionMix?(li, att)
                    project(tmp, ldo: d, att, ldx: qDim, layer: li, .o, segments: segments, next: layer.matrix(.gate))
                    prof?.mark(.o)
                    addRows(x, tmp, rows: rows, width: d)
                    prof?.mark(.residual)
                    trace?.residualPreFFN?(li, x)

                    // y = a + down·(silu(gate·u) ⊙ (up·u)), u = norm2(a)
                    normalize(h, x, segments: segments, base: layer.mlpNorm) { $0.vectors.mlpNorm[li] }
                    prof?.mark(.norms)
                    project(gate, ldo: f, h, ldx: d, layer: li, .gate, segments: segments, next: layer.matrix(.up))
                    prof?.mark(.gate)
                    project(up, ldo: f, h, ldx: d, layer: li, .up, segments: segments, next: layer.matrix(.down))
                    prof?.mark(.up)
                    forRows(rows) { range in
                        for r in range { swiGLU(gate + r * f, up + r * f, count: f) }
                    }
                    prof?.mark(.swiglu)
                    trace?.ffnCoefficients?(li, gate)
                    project(tmp, ldo: d, gate, ldx: f, layer: li, .down, segments: segments,
                            next: li + 1 < weights.layers.count ? weights.layers[li + 1].matrix(.q) : weights.lmHead)
                    prof?.mark(.down)
                    addRows(x, tmp, rows: rows, width: d)
                    prof?.mark(.residual)
                }
            }
        }
        trace?.finalHidden?(x)
        for input in inputs { input.cache.count += input.tokens.count }

        // Logits = W_U · normF(z) for the rows asked for.
        var wanted: [Int] = []
        var logitSegments: [Segment] = []
        var start = 0
        for input in inputs {
            let before = wanted.count
            switch input.logits {
            case .none: break
            case .last: wanted.append(start + input.tokens.count - 1)
            case .all: wanted.append(contentsOf: start..<(start + input.tokens.count))
            }
            logitSegments.append(Segment(rows: before..<wanted.count, variant: input.variant))
            start += input.tokens.count
        }
        let vocab = c.vocabSize
        // Every element is written by the lm head's product below, so no zero-fill.
        var logits = [Float](unsafeUninitializedCapacity: wanted.count * vocab) { _, n in n = wanted.count * vocab }
        if !wanted.isEmpty {
            for segment in logitSegments {
                let norm = segment.variant?.vectors.finalNorm
                for i in segment.rows {
                    if let norm {
                        norm.withUnsafeBytes { rmsNorm(h + i * d, x + wanted[i] * d, weight: $0.baseAddress!, dtype: .f32, count: d, eps: c.rmsNormEps) }
                    } else {
                        rmsNorm(h + i * d, x + wanted[i] * d, weight: weights.finalNorm.base, dtype: weights.finalNorm.dtype, count: d, eps: c.rmsNormEps)
                    }
                }
            }
            prof?.mark(.finalNorm)
            logits.withUnsafeMutableBufferPointer { out in
                matmul(out.baseAddress!, ldo: vocab, h, ldx: d, n: wanted.count, weights.lmHead, pool: pool, activations: activations)
                applyUnmerged(out: out.baseAddress!, ldo: vocab, x: h, ldx: d, segments: logitSegments,
                              outDim: vocab, inDim: d) { $0.lmHead }
            }
            prof?.mark(.lmHead)
        }
        var result: [[[Float]]] = []
        var cursor = 0
        for input in inputs {
            let n = input.logits == .none ? 0 : input.logits == .last ? 1 : input.tokens.count
            result.append((0..<n).map { i in Array(logits[((cursor + i) * vocab)..<((cursor + i + 1) * vocab)]) })
            cursor += n
        }
        prof?.mark(.logitsOut)
        return result
    }

    /// A run of rows of one forward step that share a variant.
    struct Segment {
        let rows: Range<Int>
        let variant: Variant?
    }

    /// out[rows, w.rows] = x[rows, w.cols] · Wᵀ for one of a layer's matrices, with each
    /// segment's variant applied: merged variants use their private copy for their rows; the
    /// unmerged ones add ΔW·x after the shared base product (DESIGN.md, Deltas and variants).
    /// Each row's result depends only on that row and its variant, never on its companions.
    /// `next`: the base matrix the forward multiplies by after this one (its start is prefetched
    /// during this product: gk_matmul_next). v names o although attention comes between: o then
    /// ran at 105–111 GFLOP/s at batch 16 on SmolLM2 against 90–106 without (three alternating
    /// pairs), attention's cache reads in between notwithstanding.
    private func project(_ out: UnsafeMutablePointer<Float>, ldo: Int, _ x: UnsafeMutablePointer<Float>, ldx: Int,
                         layer li: Int, _ module: LayerModule, segments: [Segment], next: WeightMatrix? = nil) {
        let base = weights.layers[li].matrix(module)
        let rows = segments.last?.rows.upperBound ?? 0
        let anyMerged = segments.contains { $0.variant?.mergedMatrices[li][module] != nil }
        if !anyMerged {
            matmul(out, ldo: ldo, x, ldx: ldx, n: rows, base, pool: pool, next: next, activations: activations)
        } else {
            // Consecutive segments on the same matrix share one product.
            var start = 0
            while start < segments.count {
                let w = segments[start].variant?.mergedMatrices[li][module]
                var end = start + 1
                while end < segments.count, segments[end].variant?.mergedMatrices[li][module]?.base == w?.base { end += 1 }
                let r0 = segments[start].rows.lowerBound, r1 = segments[end - 1].rows.upperBound
                matmul(out + r0 * ldo, ldo: ldo, x + r0 * ldx, ldx: ldx, n: r1 - r0, w ?? base, pool: pool, activations: activations)
                start = end
            }
        }
        applyUnmerged(out: out, ldo: ldo, x: x, ldx: ldx, segments: segments, outDim: base.rows, inDim: base.cols) {
            $0.perLayer[li][module]
        }
    }

    /// Steps with at least this many rows split their per-row elementwise phases (norms, RoPE and
    /// the cache write, SwiGLU) over the pool; below it a split costs more than it saves. Each
    /// row's operations are the same either way, so results do not change (batchInvariance).
    public static let parallelRowThreshold = 8

    /// A step asks for each layer's cached keys and values ahead of its attention (into L2,
    /// during the q/k/v projections) when all of its sequences' take at most this many bytes per
    /// layer; more would push the streaming weights out of L2. Asked for all at once, a larger
    /// batch's caches stalled q as long as they saved attention (SmolLM2, batch 16); there each
    /// attention job asks for the next row's share while it runs instead (attendGroup's `next`).
    public static let kvPrefetchBytes = 256 << 10

    /// body(range) over [0, rows), on the pool when the step has enough rows.
    private func forRows(_ rows: Int, _ body: (Range<Int>) -> Void) {
        if rows >= Model.parallelRowThreshold && pool.threads > 1 { pool.parallelFor(rows, body) } else { body(0..<rows) }
    }

    /// x += y over `rows` rows of `width` floats: axpy with a = 1, whose fused 1·y + x is x + y
    /// exactly rounded, vectorised. On one thread: splitting it measured no faster.
    private func addRows(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        axpy(x, 1, y, count: rows * width)
    }

    /// h[r] = RMSNorm(x[r]) for every row, with the norm weight of the row's variant (its
    /// private copy when a delta touched it, else the base's).
    private func normalize(_ h: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, segments: [Segment],
                           base: VectorView, _ override: (Variant) -> [Float]?) {
        let d = config.hiddenSize, eps = config.rmsNormEps
        let overrides = segments.map { $0.variant.flatMap(override) }   // nil: the base's weight
        forRows(segments.last?.rows.upperBound ?? 0) { range in
            for (segment, weight) in zip(segments, overrides) {
                let rows = segment.rows.clamped(to: range)
                if let weight {
                    weight.withUnsafeBytes { w in
                        for r in rows { rmsNorm(h + r * d, x + r * d, weight: w.baseAddress!, dtype: .f32, count: d, eps: eps) }
                    }
                } else {
                    for r in rows { rmsNorm(h + r * d, x + r * d, weight: base.base, dtype: base.dtype, count: d, eps: eps) }
                }
            }
        }
    }

    /// out[r, outDim] += x[r, inDim] · ΔWᵀ for every row r of every segment whose variant has
    /// unmerged entries for this matrix (`entries`). The rows of one variant are gathered from
    /// all its segments and go through each entry's product once, on the same `gk_matmul`
    /// kernels as the base product (so a variant's delta bytes are read once per step, not once
    /// per sequence). Each output element is reduced in a fixed order whatever the batch and
    /// entries are added in a fixed order, so a row's result depends only on that row and its
    /// variant (batch invariance).
    private func applyUnmerged(out: UnsafeMutablePointer<Float>, ldo: Int, x: UnsafeMutablePointer<Float>, ldx: Int,
                               segments: [Segment], outDim: Int, inDim: Int, _ entriesOf: (Variant) -> [PackedDelta]?) {
        for (i, segment) in segments.enumerated() {
            guard let variant = segment.variant, let entries = entriesOf(variant), !entries.isEmpty else { continue }
            // Each variant once, at its first segment.
            if segments[..<i].contains(where: { $0.variant === variant }) { continue }
            var m = 0, parts = 0
            for s in segments[i...] where s.variant === variant { m += s.rows.count; parts += 1 }
            guard m > 0 else { continue }
            // The variant's rows as one [m, ·] block: in place when they are contiguous.
            let xs: UnsafeMutablePointer<Float>, lds: Int
            if parts == 1 {
                xs = x + segment.rows.lowerBound * ldx
                lds = ldx
            } else {
                xs = scratch.buffer(0, count: m * inDim)
                lds = inDim
                var g = 0
                for s in segments[i...] where s.variant === variant {
                    for r in s.rows { (xs + g * inDim).update(from: x + r * ldx, count: inDim); g += 1 }
                }
            }
            /// Calls body(g, r) for the g-th row of the block, row r of the step.
            func forEachRow(_ body: (Int, Int) -> Void) {
                var g = 0
                for s in segments[i...] where s.variant === variant {
                    for r in s.rows { body(g, r); g += 1 }
                }
            }
            for e in entries {
                switch e.kind {
                case .rows:
                    let k = e.indices.count
                    let tmp = scratch.buffer(1, count: m * k)
                    matmul(tmp, ldo: k, xs, ldx: lds, n: m, e.first, pool: pool)
                    e.indices.withUnsafeBufferPointer { idx in
                        forEachRow { g, r in
                            let o = out + r * ldo, t = tmp + g * k
                            for j in 0..<k { o[Int(idx[j])] += t[j] }
                        }
                    }
                case .dense, .columns, .lowRank:
                    let tmp = scratch.buffer(1, count: m * outDim)
                    switch e.kind {
                    case .columns:
                        let k = e.indices.count
                        let xc = scratch.buffer(2, count: m * k)
                        e.indices.withUnsafeBufferPointer { idx in
                            for g in 0..<m { for j in 0..<k { xc[g * k + j] = xs[g * lds + Int(idx[j])] } }
                        }
                        matmul(tmp, ldo: outDim, xc, ldx: k, n: m, e.first, pool: pool)
                    case .lowRank:
                        let rank = e.first.rows
                        let hidden = scratch.buffer(2, count: m * rank)
                        matmul(hidden, ldo: rank, xs, ldx: lds, n: m, e.first, pool: pool)          // A·x: [m, r]
                        matmul(tmp, ldo: outDim, hidden, ldx: rank, n: m, e.second!, pool: pool)   // B·(A·x)
                    default:
                        matmul(tmp, ldo: outDim, xs, ldx: lds, n: m, e.first, pool: pool)
                    }
                    let scale = e.scale
                    forEachRow { g, r in
                        let o = out + r * ldo, t = tmp + g * outDim
                        if e.kind == .lowRank {
                            for j in 0..<outDim { o[j] += scale * t[j] }
                        } else {
                            for j in 0..<outDim { o[j] += t[j] }
                        }
                    }
                }
            }
        }
    }
}

/// Observes a forward step's intermediate values (the plugin ABI's traced forward). Buffers are
/// the step's rows in order (row r = the r-th new token of the step) and valid only during the
/// call. `attentionWeights` runs on the pool's threads, once per (row, head), concurrently.
public struct ForwardTrace: @unchecked Sendable {
    /// (layer, x [rows, hidden]): the residual entering the layer.
    public var residualPreAttention: ((Int, UnsafePointer<Float>) -> Void)?
    /// (layer, a [rows, hidden]): the residual after the layer's attention.
    public var residualPreFFN: ((Int, UnsafePointer<Float>) -> Void)?
    /// (layer, [rows, heads·headDim]): Σ_p α_p v_p per head, the input of o_proj.
    public var attentionMix: ((Int, UnsafePointer<Float>) -> Void)?
    /// (layer, [rows, intermediate]): silu(gate·u) ⊙ (up·u), the input of down_proj.
    public var ffnCoefficients: ((Int, UnsafePointer<Float>) -> Void)?
    /// [rows, hidden]: the residual after the last layer, before the final norm.
    public var finalHidden: ((UnsafePointer<Float>) -> Void)?
    /// (layer, row, head, α, n): the row's attention weights over cache positions 0..<n.
    public var attentionWeights: ((Int, Int, Int, UnsafePointer<Float>, Int) -> Void)?

    public init() {}
}

/// Growable f32 buffers, kept from one step to the next.
final class Scratch: @unchecked Sendable {
    private var slots: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []

    /// Slot `slot` with room for at least `count` floats (contents undefined).
    func buffer(_ slot: Int, count: Int) -> UnsafeMutablePointer<Float> {
        while slots.count <= slot { slots.append((UnsafeMutablePointer<Float>.allocate(capacity: 1), 1)) }
        if slots[slot].capacity < count {
            slots[slot].pointer.deallocate()
            let capacity = max(count, slots[slot].capacity * 2)
            slots[slot] = (UnsafeMutablePointer<Float>.allocate(capacity: capacity), capacity)
        }
        return slots[slot].pointer
    }

    deinit { for s in slots { s.pointer.deallocate() } }
}
