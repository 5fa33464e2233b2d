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
    /// When set, `forward` charges its time to phases here (benchmarks: `graft bench --profile`).
    public var profile: ForwardProfile?

    public init(weights: ModelWeights, pool: WorkerPool) {
        self.config = weights.config
        self.weights = weights
        self.pool = pool
        self.inverseFrequencies = weights.config.rope.inverseFrequencies(headDim: weights.config.headDim).map { Float($0) }
    }

    /// Opens a Hugging Face model folder: config.json and model.safetensors (or shards).
    public static func load(directory: String, pool: WorkerPool = WorkerPool()) throws -> Model {
        let config = try ModelConfig.load(directory: directory)
        let storage = try SafeTensorsModel(directory: directory)
        return Model(weights: try ModelWeights(config: config, storage: storage), pool: pool)
    }

    /// A new empty cache for one sequence of at most `maxTokens` positions.
    public func makeCache(maxTokens: Int? = nil) -> KVCache {
        KVCache(layers: config.layers, kvDim: config.kvDim,
                maxTokens: min(maxTokens ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings))
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
    /// new token, each `vocabSize` floats.
    public func forward(_ inputs: [ForwardInput]) throws -> [[[Float]]] {
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

        prof?.mark(.setup)
        var t = 0
        for input in inputs {
            for tok in input.tokens {
                weights.embed.widenRow(tok, into: x + t * d)
                t += 1
            }
        }
        prof?.mark(.embed)

        ropeCos.withUnsafeBufferPointer { cosTable in
            ropeSin.withUnsafeBufferPointer { sinTable in
                for (li, layer) in weights.layers.enumerated() {
                    // a = x + o·Attn(q, k, v)(norm1(x))
                    for r in 0..<rows {
                        rmsNorm(h + r * d, x + r * d, weight: layer.attnNorm.base, dtype: layer.attnNorm.dtype, count: d, eps: c.rmsNormEps)
                    }
                    prof?.mark(.norms)
                    project(q, ldo: qDim, h, ldx: d, layer: li, .q, segments: segments)
                    prof?.mark(.q)
                    project(k, ldo: kvDim, h, ldx: d, layer: li, .k, segments: segments)
                    prof?.mark(.k)
                    project(v, ldo: kvDim, h, ldx: d, layer: li, .v, segments: segments)
                    prof?.mark(.v)
                    if let qb = layer.qBias, let kb = layer.kBias, let vb = layer.vBias {
                        for r in 0..<rows {
                            for i in 0..<qDim { q[r * qDim + i] += qb[i] }
                            for i in 0..<kvDim { k[r * kvDim + i] += kb[i]; v[r * kvDim + i] += vb[i] }
                        }
                    }
                    // RoPE, rotate_half convention: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin).
                    for r in 0..<rows {
                        let cs = cosTable.baseAddress! + posOf[r] * half
                        let sn = sinTable.baseAddress! + posOf[r] * half
                        func rotate(_ base: UnsafeMutablePointer<Float>, _ nHeads: Int) {
                            for hh in 0..<nHeads {
                                let p = base + hh * hd
                                for i in 0..<half {
                                    let a = p[i], b = p[i + half]
                                    p[i] = a * cs[i] - b * sn[i]
                                    p[i + half] = b * cs[i] + a * sn[i]
                                }
                            }
                        }
                        rotate(q + r * qDim, c.heads)
                        rotate(k + r * kvDim, c.kvHeads)
                        let cache = caches[seqOf[r]]
                        cache.key(layer: li, position: posOf[r]).update(from: k + r * kvDim, count: kvDim)
                        cache.value(layer: li, position: posOf[r]).update(from: v + r * kvDim, count: kvDim)
                    }
                    prof?.mark(.ropeCache)
                    // Causal attention of each new token over its own sequence's cache.
                    let scale = 1 / Float(hd).squareRoot()
                    let posCopy = posOf, seqCopy = seqOf
                    nonisolated(unsafe) let (qp, ap) = (q, att)
                    pool.parallelFor(rows * c.heads) { range in
                        var scores = [Float](repeating: 0, count: (posCopy.max() ?? 0) + 1)
                        scores.withUnsafeMutableBufferPointer { sc in
                            for job in range {
                                let r = job / c.heads, head = job % c.heads, g = head / groups
                                let cache = caches[seqCopy[r]]
                                let n = posCopy[r] + 1
                                attend(ap + r * qDim + head * hd, query: qp + r * qDim + head * hd,
                                       keys: cache.key(layer: li, position: 0) + g * hd,
                                       values: cache.value(layer: li, position: 0) + g * hd,
                                       stride: kvDim, count: n, headDim: hd, scale: scale, scratch: sc.baseAddress!)
                            }
                        }
                    }
                    prof?.mark(.attention)
                    project(tmp, ldo: d, att, ldx: qDim, layer: li, .o, segments: segments)
                    prof?.mark(.o)
                    for i in 0..<(rows * d) { x[i] += tmp[i] }
                    prof?.mark(.residual)

                    // y = a + down·(silu(gate·u) ⊙ (up·u)), u = norm2(a)
                    for r in 0..<rows {
                        rmsNorm(h + r * d, x + r * d, weight: layer.mlpNorm.base, dtype: layer.mlpNorm.dtype, count: d, eps: c.rmsNormEps)
                    }
                    prof?.mark(.norms)
                    project(gate, ldo: f, h, ldx: d, layer: li, .gate, segments: segments)
                    prof?.mark(.gate)
                    project(up, ldo: f, h, ldx: d, layer: li, .up, segments: segments)
                    prof?.mark(.up)
                    for r in 0..<rows { swiGLU(gate + r * f, up + r * f, count: f) }
                    prof?.mark(.swiglu)
                    project(tmp, ldo: d, gate, ldx: f, layer: li, .down, segments: segments)
                    prof?.mark(.down)
                    for i in 0..<(rows * d) { x[i] += tmp[i] }
                    prof?.mark(.residual)
                }
            }
        }
        for input in inputs { input.cache.count += input.tokens.count }

        // Logits = W_U · normF(z) for the rows asked for.
        var wanted: [Int] = []
        var start = 0
        for input in inputs {
            switch input.logits {
            case .none: break
            case .last: wanted.append(start + input.tokens.count - 1)
            case .all: wanted.append(contentsOf: start..<(start + input.tokens.count))
            }
            start += input.tokens.count
        }
        let vocab = c.vocabSize
        var logits = [Float](repeating: 0, count: wanted.count * vocab)
        if !wanted.isEmpty {
            for (i, r) in wanted.enumerated() {
                rmsNorm(h + i * d, x + r * d, weight: weights.finalNorm.base, dtype: weights.finalNorm.dtype, count: d, eps: c.rmsNormEps)
            }
            prof?.mark(.finalNorm)
            logits.withUnsafeMutableBufferPointer { out in
                matmul(out.baseAddress!, ldo: vocab, h, ldx: d, n: wanted.count, weights.lmHead, pool: pool)
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
    private func project(_ out: UnsafeMutablePointer<Float>, ldo: Int, _ x: UnsafeMutablePointer<Float>, ldx: Int,
                         layer li: Int, _ module: LayerModule, segments: [Segment]) {
        let base = weights.layers[li].matrix(module)
        let rows = segments.last?.rows.upperBound ?? 0
        let anyMerged = segments.contains { $0.variant?.mergedMatrices[li][module] != nil }
        if !anyMerged {
            matmul(out, ldo: ldo, x, ldx: ldx, n: rows, base, pool: pool)
        } else {
            // Consecutive segments on the same matrix share one product.
            var start = 0
            while start < segments.count {
                let w = segments[start].variant?.mergedMatrices[li][module]
                var end = start + 1
                while end < segments.count, segments[end].variant?.mergedMatrices[li][module]?.base == w?.base { end += 1 }
                let r0 = segments[start].rows.lowerBound, r1 = segments[end - 1].rows.upperBound
                matmul(out + r0 * ldo, ldo: ldo, x + r0 * ldx, ldx: ldx, n: r1 - r0, w ?? base, pool: pool)
                start = end
            }
        }
        for segment in segments {
            guard let entries = segment.variant?.perLayer[li][module], !entries.isEmpty, !segment.rows.isEmpty else { continue }
            let n = segment.rows.count
            let o = out + segment.rows.lowerBound * ldo
            let xs = x + segment.rows.lowerBound * ldx
            for entry in entries {
                applyDelta(entry, out: o, ldo: ldo, x: xs, ldx: ldx, n: n, outDim: base.rows, inDim: base.cols)
            }
        }
    }

    /// out[n, outDim] += x[n, inDim] · ΔWᵀ for one delta entry.
    private func applyDelta(_ entry: DeltaEntry, out: UnsafeMutablePointer<Float>, ldo: Int,
                            x: UnsafeMutablePointer<Float>, ldx: Int, n: Int, outDim: Int, inDim: Int) {
        func product(_ values: [Float], rows: Int, cols: Int, _ input: UnsafePointer<Float>, ldi: Int) -> [Float] {
            var result = [Float](repeating: 0, count: n * rows)
            values.withUnsafeBytes { v in
                result.withUnsafeMutableBufferPointer { r in
                    matmul(r.baseAddress!, ldo: rows, input, ldx: ldi, n: n,
                           WeightMatrix(dtype: .f32, rows: rows, cols: cols, base: v.baseAddress!), pool: pool)
                }
            }
            return result
        }
        switch entry {
        case .dense(let values):
            let d = product(values, rows: outDim, cols: inDim, x, ldi: ldx)
            for t in 0..<n { for r in 0..<outDim { out[t * ldo + r] += d[t * outDim + r] } }
        case .rows(let indices, let values):
            values.withUnsafeBufferPointer { v in
                for t in 0..<n {
                    for (i, r) in indices.enumerated() {
                        out[t * ldo + r] += dot(v.baseAddress! + i * inDim, x + t * ldx, count: inDim)
                    }
                }
            }
        case .columns(let indices, let values):
            let k = indices.count
            var gathered = [Float](repeating: 0, count: n * k)
            for t in 0..<n { for (j, c) in indices.enumerated() { gathered[t * k + j] = x[t * ldx + c] } }
            let d = gathered.withUnsafeBufferPointer { product(values, rows: outDim, cols: k, $0.baseAddress!, ldi: k) }
            for t in 0..<n { for r in 0..<outDim { out[t * ldo + r] += d[t * outDim + r] } }
        case .lowRank(let a, let b, let rank, let scale):
            let hidden = product(a, rows: rank, cols: inDim, x, ldi: ldx)                 // A·x: [n, r]
            let d = hidden.withUnsafeBufferPointer { product(b, rows: outDim, cols: rank, $0.baseAddress!, ldi: rank) }
            for t in 0..<n { for r in 0..<outDim { out[t * ldo + r] += scale * d[t * outDim + r] } }
        }
    }
}
