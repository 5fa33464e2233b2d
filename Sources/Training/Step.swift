import CTrainKernels
import Foundation
import LanguageModel
import TensorCore

/// One decoder block's saved activations (what layerForward writes and layerBackward reads).
final class LayerScratch {
    let h1 = Scratch(), rstd1 = Scratch(), q = Scratch(), k = Scratch(), v = Scratch()
    let att = Scratch(), x2 = Scratch(), h2 = Scratch(), rstd2 = Scratch()
    let gate = Scratch(), up = Scratch(), m = Scratch()

    /// Floats of one block's activations per row.
    static func floatsPerRow(_ c: ModelConfig) -> Int { 3 * c.hiddenSize + 2 + 2 * c.qDim + 2 * c.kvDim + 3 * c.intermediateSize }

    /// Views sized for `rows` rows, in this one place.
    func views(rows: Int, _ c: ModelConfig) -> LayerActivations {
        let d = c.hiddenSize, f = c.intermediateSize
        return LayerActivations(
            h1: h1.reserve(rows * d), rstd1: rstd1.reserve(rows),
            q: q.reserve(rows * c.qDim), k: k.reserve(rows * c.kvDim), v: v.reserve(rows * c.kvDim),
            att: att.reserve(rows * c.qDim), x2: x2.reserve(rows * d),
            h2: h2.reserve(rows * d), rstd2: rstd2.reserve(rows),
            gate: gate.reserve(rows * f), up: up.reserve(rows * f), m: m.reserve(rows * f))
    }
}

/// Scratch memory of one step, reused across steps (sized by the largest batch seen).
/// When every layer's activations fit the budget (`TrainingModel.keptActivationsBudgetBytes`)
/// the forward keeps them all and the backward reads them. Otherwise activations are kept for
/// one layer at a time: the forward keeps only each layer's input (the residual stream), and
/// the backward recomputes a layer's activations before reading it in reverse — activation
/// checkpointing per layer, one extra forward for O(layers) less memory. Both give the same
/// floats: the recompute runs the same kernels on the same inputs.
final class StepBuffers {
    let residuals = Scratch()        // (layers + 1) × rows × hidden
    let shared = LayerScratch()
    /// One LayerScratch per layer while steps keep every layer's activations.
    var kept: [LayerScratch] = []
    /// Whether the current step keeps every layer's activations (no recompute).
    var keepAll = false
    let y = Scratch()
    let dh = Scratch(), datt = Scratch(), dq = Scratch(), dk = Scratch(), dv = Scratch()
    let dm = Scratch(), dg = Scratch(), du = Scratch(), dres = Scratch()
    let hF = Scratch(), rstdF = Scratch(), dhF = Scratch()
    let hChunk = Scratch(), dhChunk = Scratch(), logits = Scratch(), teacherLogits = Scratch(), teacherChunk = Scratch()

    /// Layer `li`'s saved activations for `rows` rows: its own buffers when the step keeps
    /// every layer's, else the shared ones.
    func layerActivations(_ li: Int, rows: Int, _ c: ModelConfig) -> LayerActivations {
        (keepAll ? kept[li] : shared).views(rows: rows, c)
    }

    /// Decides whether a step of `rows` rows keeps every layer's activations: when the layers
    /// beyond the one always held fit `budget` bytes.
    func planActivations(rows: Int, _ c: ModelConfig, budget: Int) {
        let extra = (c.layers - 1) * rows * LayerScratch.floatsPerRow(c) * MemoryLayout<Float>.size
        keepAll = c.layers > 1 && extra <= budget
        if keepAll {
            while kept.count < c.layers { kept.append(kept.isEmpty ? shared : LayerScratch()) }
        } else {
            kept = []
        }
    }
}

/// Views into StepBuffers of one decoder block's saved activations.
struct LayerActivations {
    let h1, rstd1, q, k, v, att, x2, h2, rstd2, gate, up, m: UnsafeMutablePointer<Float>
}

extension TrainingModel {
    /// Loss of the batch and, when `backward`, its gradients accumulated into every buffer
    /// asked for (weights, row/column selections, deltas, LoRA adapters, biases, norms).
    /// The loss is Σ over label positions / `normalizer` (default: the number of label
    /// positions in this batch, transformers' mean; pass the total of an accumulation window to
    /// make micro-batches add up to its mean).
    @discardableResult
    public func lossAndGradients(_ batch: TrainingBatch, objective: Objective = .crossEntropy,
                                 normalizer: Double? = nil, backward: Bool = true) throws -> LossResult {
        let c = config
        let layout = try validate(batch)
        let rows = layout.rows, d = c.hiddenSize, vocab = c.vocabSize
        for l in linears { l.prepare() }
        let b = buffers

        // Teacher's final normed hidden states first: its scratch is its own.
        var teacherHidden: UnsafeMutablePointer<Float>? = nil
        var teacherModel: TrainingModel? = nil
        var mode: Int32 = 0, beta: Float = 0, temperature: Float = 1
        if case let .distillation(teacher, divergence, temp) = objective {
            guard teacher.config.vocabSize == vocab else {
                throw TrainingError.invalidArgument("the teacher's vocabulary (\(teacher.config.vocabSize)) differs from the student's (\(vocab))")
            }
            guard temp > 0 else { throw TrainingError.invalidArgument("temperature must be positive") }
            for l in teacher.linears { l.prepare() }
            teacherHidden = teacher.finalHidden(layout: layout, tokens: batch.sequences.flatMap(\.tokens))
            teacherModel = teacher
            temperature = temp
            switch divergence {
            case .forwardKL: mode = 0
            case .reverseKL: mode = 1
            case .generalizedJSD(let bt):
                guard bt >= 0, bt <= 1 else { throw TrainingError.invalidArgument("β must be in [0, 1]") }
                if bt == 0 { mode = 0 } else if bt == 1 { mode = 1 } else { mode = 2; beta = bt }
            }
        }

        // Forward, keeping each layer's input.
        let tokens = batch.sequences.flatMap(\.tokens)
        let res = b.residuals.reserve((c.layers + 1) * rows * d)
        let prof = StepProfiler.shared
        b.planActivations(rows: rows, c, budget: backward ? keptActivationsBudget() : 0)
        defer { b.keepAll = false }
        profile("embedding") {
            for (r, tok) in tokens.enumerated() {
                (res + r * d).update(from: embed.forwardWeight + tok * d, count: d)
            }
        }
        for li in 0..<c.layers {
            layerForward(li, x: res + li * rows * d, y: res + (li + 1) * rows * d, layout: layout)
        }
        let hF = b.hF.reserve(rows * d), rstdF = b.rstdF.reserve(rows)
        profile("lm_head elementwise") {
            tk_rmsnorm_forward(hF, rstdF, res + c.layers * rows * d, finalNorm.value.data, rows, d, c.rmsNormEps)
        }

        // Label positions: row of position t predicts labels[t + 1].
        var lossRows: [Int] = [], targets: [Int32] = []
        for (s, seq) in batch.sequences.enumerated() {
            for t in 0..<max(seq.tokens.count - 1, 0) where seq.labels[t + 1] != TrainingSequence.ignoreIndex {
                lossRows.append(layout.starts[s] + t)
                targets.append(Int32(seq.labels[t + 1]))
            }
        }
        let norm = normalizer ?? Double(lossRows.count)
        guard norm > 0 || lossRows.isEmpty else { throw TrainingError.invalidArgument("normalizer must be positive") }
        let weight = lossRows.isEmpty ? 0 : Float(1 / norm)
        let dhF = profile("lm_head elementwise") { b.dhF.zeros(rows * d) }
        prof.lmHead = true
        defer { prof.lmHead = false }

        // Cross-entropy in chunks of rows: full logits of a 16 × 512 batch over a 152k
        // vocabulary would be ~5 GB; a chunk is at most 2^24 floats.
        let chunkRows = max(1, min(lossRows.count, (1 << 24) / vocab))
        var weighted = 0.0
        var c0 = 0
        while c0 < lossRows.count {
            let n = min(chunkRows, lossRows.count - c0)
            let hc = b.hChunk.reserve(n * d)
            profile("lm_head elementwise") {
                for i in 0..<n { (hc + i * d).update(from: hF + lossRows[c0 + i] * d, count: d) }
            }
            let logits = b.logits.reserve(n * vocab)
            lmHead.forward(logits, hc, n: n, pool: pool)
            let w = [Float](repeating: weight, count: n)
            if let teacher = teacherModel, let th = teacherHidden {
                let td = teacher.config.hiddenSize
                let tc = b.teacherChunk.reserve(n * td)
                for i in 0..<n { (tc + i * td).update(from: th + lossRows[c0 + i] * td, count: td) }
                let tl = b.teacherLogits.reserve(n * vocab)
                teacher.lmHead.forward(tl, tc, n: n, pool: teacher.pool)
                weighted += tk_distill(logits, tl, n, vocab, w, mode, beta, temperature)
            } else {
                weighted += profile("lm_head cross-entropy") {
                    targets[c0..<(c0 + n)].withUnsafeBufferPointer { tk_cross_entropy(logits, n, vocab, $0.baseAddress!, w) }
                }
            }
            if backward {
                let dhc = b.dhChunk.reserve(n * d)
                lmHead.backward(dx: dhc, dy: logits, x: hc, n: n, pool: pool)
                profile("lm_head elementwise") {
                    for i in 0..<n { axpy(d, 1, dhc + i * d, dhF + lossRows[c0 + i] * d) }
                }
            }
            c0 += n
        }
        prof.lmHead = false
        let result = LossResult(loss: weighted, sum: weighted * norm, tokens: lossRows.count)
        guard backward else { return result }

        // Backward: final norm, then the layers in reverse (each recomputed from its input).
        let dres = b.dres.zeros(rows * d)
        profile("bwd elementwise") {
            tk_rmsnorm_backward(dres, finalNorm.gradient?.data, dhF, res + c.layers * rows * d, finalNorm.value.data, rstdF, rows, d)
        }
        for li in stride(from: c.layers - 1, through: 0, by: -1) {
            // The last layer's activations are still in the buffers from the forward (every
            // layer's, when the step keeps them all).
            if li != c.layers - 1 && !b.keepAll {
                prof.recomputing = true
                layerForward(li, x: res + li * rows * d, y: b.y.reserve(rows * d), layout: layout)
                prof.recomputing = false
            }
            layerBackward(li, dres: dres, x: res + li * rows * d, layout: layout)
        }
        // Embedding rows: scatter-add.
        profile("embedding") {
            for g in [embed.weightGradient, embed.deltaGradient].compactMap({ $0 }) {
                for (r, tok) in tokens.enumerated() { g.addRow(tok, dres + r * d, cols: d) }
            }
        }
        // Gradients zeroed lazily that this backward did not reach.
        profile("zero gradients") { materializeGradients() }
        return result
    }

    /// Loss only (no gradients): held-out evaluation.
    public func loss(_ batch: TrainingBatch, objective: Objective = .crossEntropy) throws -> LossResult {
        try lossAndGradients(batch, objective: objective, backward: false)
    }

    /// Logits of every position of one sequence, [tokens.count × vocab], with the current
    /// deltas and adapters: for tests that a start leaves the model unchanged.
    public func logits(_ tokens: [Int]) throws -> [Float] {
        let layout = try validate(TrainingBatch([TrainingSequence(tokens: tokens)]))
        for l in linears { l.prepare() }
        let h = finalHidden(layout: layout, tokens: tokens)
        var out = [Float](repeating: 0, count: tokens.count * config.vocabSize)
        out.withUnsafeMutableBufferPointer { lmHead.forward($0.baseAddress!, h, n: tokens.count, pool: pool) }
        return out
    }

    /// Final normed hidden states of every row (valid until the next step on this model).
    func finalHidden(layout: RowLayout, tokens: [Int]) -> UnsafeMutablePointer<Float> {
        let c = config, rows = layout.rows, d = c.hiddenSize, b = buffers
        let x = b.residuals.reserve(2 * rows * d)
        var cur = x, next = x + rows * d
        for (r, tok) in tokens.enumerated() { (cur + r * d).update(from: embed.forwardWeight + tok * d, count: d) }
        for li in 0..<c.layers {
            layerForward(li, x: cur, y: next, layout: layout)
            swap(&cur, &next)
        }
        let hF = b.hF.reserve(rows * d), rstdF = b.rstdF.reserve(rows)
        tk_rmsnorm_forward(hF, rstdF, cur, finalNorm.value.data, rows, d, c.rmsNormEps)
        return hF
    }

    private func validate(_ batch: TrainingBatch) throws -> RowLayout {
        guard !batch.sequences.isEmpty else { throw TrainingError.invalidBatch("no sequences") }
        for (i, s) in batch.sequences.enumerated() {
            guard !s.tokens.isEmpty else { throw TrainingError.invalidBatch("sequence \(i) is empty") }
            guard s.labels.count == s.tokens.count else { throw TrainingError.invalidBatch("sequence \(i): \(s.labels.count) labels for \(s.tokens.count) tokens") }
            guard s.tokens.count <= config.maxPositionEmbeddings else {
                throw TrainingError.invalidBatch("sequence \(i) has \(s.tokens.count) tokens; the model's context is \(config.maxPositionEmbeddings)")
            }
            for t in s.tokens where t < 0 || t >= config.vocabSize {
                throw TrainingError.invalidBatch("token \(t) outside the vocabulary (\(config.vocabSize))")
            }
            for t in s.labels where t != TrainingSequence.ignoreIndex && (t < 0 || t >= config.vocabSize) {
                throw TrainingError.invalidBatch("label \(t) outside the vocabulary (\(config.vocabSize))")
            }
        }
        return RowLayout(lengths: batch.sequences.map { $0.tokens.count })
    }

    // MARK: One decoder block, forward and backward

    /// y = a + down·(silu(gate·u) ⊙ (up·u)), u = norm2(a), a = x + o·Attn(norm1(x)).
    /// Saves h1, rstd1, q, k (rotated), v, att, a (x2), h2, rstd2, gate, up, m in the buffers.
    func layerForward(_ li: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, layout: RowLayout) {
        let c = config, L = layers[li], b = buffers
        let rows = layout.rows, d = c.hiddenSize, f = c.intermediateSize, qDim = c.qDim, kvDim = c.kvDim
        let s = b.layerActivations(li, rows: rows, c)
        let (h1, rstd1, q, k, v, att, x2, h2, rstd2, gate, up, m) = (s.h1, s.rstd1, s.q, s.k, s.v, s.att, s.x2, s.h2, s.rstd2, s.gate, s.up, s.m)

        let prof = StepProfiler.shared
        profile(prof.forwardPrefix + " elementwise") { tk_rmsnorm_forward(h1, rstd1, x, L.attnNorm.value.data, rows, d, c.rmsNormEps) }
        L.q.forward(q, h1, n: rows, pool: pool)
        L.k.forward(k, h1, n: rows, pool: pool)
        L.v.forward(v, h1, n: rows, pool: pool)
        profile(prof.forwardPrefix + " elementwise") {
            layout.positions.withUnsafeBufferPointer { pos in
                ropeCos.withUnsafeBufferPointer { cs in
                    ropeSin.withUnsafeBufferPointer { sn in
                        tk_rope(q, rows, qDim, c.heads, c.headDim, pos.baseAddress!, cs.baseAddress!, sn.baseAddress!, 0)
                        tk_rope(k, rows, kvDim, c.kvHeads, c.headDim, pos.baseAddress!, cs.baseAddress!, sn.baseAddress!, 0)
                    }
                }
            }
        }
        profile(prof.forwardPrefix + " attention", flops: 4 * Double(layout.lengths.reduce(0) { $0 + $1 * $1 } * qDim)) {
            attentionForward(att, q: q, k: k, v: v, layout: layout, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, pool: pool)
        }
        profile(prof.forwardPrefix + " elementwise") { x2.update(from: x, count: rows * d) }
        L.o.forward(x2, att, n: rows, accumulate: true, pool: pool)

        profile(prof.forwardPrefix + " elementwise") { tk_rmsnorm_forward(h2, rstd2, x2, L.mlpNorm.value.data, rows, d, c.rmsNormEps) }
        L.gate.forward(gate, h2, n: rows, pool: pool)
        L.up.forward(up, h2, n: rows, pool: pool)
        profile(prof.forwardPrefix + " elementwise") {
            tk_swiglu_forward(m, gate, up, rows * f)
            y.update(from: x2, count: rows * d)
        }
        L.down.forward(y, m, n: rows, accumulate: true, pool: pool)
    }

    /// The forward read in reverse, from the activations `layerForward` left in the buffers.
    /// On entry dres = ∂loss/∂y; on exit ∂loss/∂x.
    func layerBackward(_ li: Int, dres: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, layout: RowLayout) {
        let c = config, L = layers[li], b = buffers
        let rows = layout.rows, d = c.hiddenSize, f = c.intermediateSize, qDim = c.qDim, kvDim = c.kvDim
        let s = b.layerActivations(li, rows: rows, c)
        let (h1, rstd1, q, k, v, att, x2, h2, rstd2, gate, up, m) = (s.h1, s.rstd1, s.q, s.k, s.v, s.att, s.x2, s.h2, s.rstd2, s.gate, s.up, s.m)
        let dh = b.dh.reserve(rows * d), datt = b.datt.reserve(rows * qDim)
        let dq = b.dq.reserve(rows * qDim), dk = b.dk.reserve(rows * kvDim), dv = b.dv.reserve(rows * kvDim)
        let dm = b.dm.reserve(rows * f), dg = b.dg.reserve(rows * f), du = b.du.reserve(rows * f)

        // y = a + down(m)
        L.down.backward(dx: dm, dy: dres, x: m, n: rows, pool: pool)
        profile("bwd elementwise") { tk_swiglu_backward(dg, du, dm, gate, up, rows * f) }
        L.gate.backward(dx: dh, dy: dg, x: h2, n: rows, pool: pool)
        L.up.backward(dx: dh, accumulate: true, dy: du, x: h2, n: rows, pool: pool)
        profile("bwd elementwise") { tk_rmsnorm_backward(dres, L.mlpNorm.gradient?.data, dh, x2, L.mlpNorm.value.data, rstd2, rows, d) }

        // a = x + o(att)
        L.o.backward(dx: datt, dy: dres, x: att, n: rows, pool: pool)
        profile("bwd attention", flops: 10 * Double(layout.lengths.reduce(0) { $0 + $1 * $1 } * qDim)) {
            attentionBackward(dq: dq, dk: dk, dv: dv, datt: datt, q: q, k: k, v: v, layout: layout,
                              heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, pool: pool)
        }
        profile("bwd elementwise") {
            layout.positions.withUnsafeBufferPointer { pos in
                ropeCos.withUnsafeBufferPointer { cs in
                    ropeSin.withUnsafeBufferPointer { sn in
                        tk_rope(dq, rows, qDim, c.heads, c.headDim, pos.baseAddress!, cs.baseAddress!, sn.baseAddress!, 1)
                        tk_rope(dk, rows, kvDim, c.kvHeads, c.headDim, pos.baseAddress!, cs.baseAddress!, sn.baseAddress!, 1)
                    }
                }
            }
        }
        L.q.backward(dx: dh, dy: dq, x: h1, n: rows, pool: pool)
        L.k.backward(dx: dh, accumulate: true, dy: dk, x: h1, n: rows, pool: pool)
        L.v.backward(dx: dh, accumulate: true, dy: dv, x: h1, n: rows, pool: pool)
        profile("bwd elementwise") { tk_rmsnorm_backward(dres, L.attnNorm.gradient?.data, dh, x, L.attnNorm.value.data, rstd1, rows, d) }
    }
}
