import COpenBLAS
import CTrainKernels
import TensorCore

/// Where each sequence of a batch lives in the flattened rows.
struct RowLayout {
    var rows: Int
    var starts: [Int]
    var lengths: [Int]
    /// Position of each row within its sequence (RoPE).
    var positions: [Int32]

    init(lengths: [Int]) {
        self.lengths = lengths
        var s: [Int] = [], p: [Int32] = []
        var r = 0
        for n in lengths {
            s.append(r)
            for t in 0..<n { p.append(Int32(t)) }
            r += n
        }
        starts = s
        positions = p
        rows = r
    }
}

@inline(__always)
private func sgemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                   _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                   _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Causal GQA attention per sequence and head (q, k already rotated):
/// att_h = softmax(Q_h K_gᵀ / √hd, causal) V_g, g = h / (heads / kvHeads).
/// q, att [rows, heads·hd]; k, v [rows, kvHeads·hd]. Nothing is saved: the backward
/// recomputes P, which costs T²·hd per head against the T²-sized memory it would hold.
func attentionForward(_ att: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                      v: UnsafePointer<Float>, layout: RowLayout, heads: Int, kvHeads: Int, headDim hd: Int,
                      pool: WorkerPool) {
    let qDim = heads * hd, kvDim = kvHeads * hd, groups = heads / kvHeads
    let scale = 1 / Float(hd).squareRoot()
    let maxT = layout.lengths.max() ?? 0
    let jobs = layout.lengths.count * heads
    nonisolated(unsafe) let (ap, qp, kp, vp) = (att, q, k, v)
    pool.parallelFor(jobs) { range in
        let s = UnsafeMutablePointer<Float>.allocate(capacity: max(maxT * maxT, 1))
        defer { s.deallocate() }
        for job in range {
            let seq = job / heads, h = job % heads, g = h / groups
            let t = layout.lengths[seq], r0 = layout.starts[seq]
            guard t > 0 else { continue }
            let qh = qp + r0 * qDim + h * hd, kg = kp + r0 * kvDim + g * hd, vg = vp + r0 * kvDim + g * hd
            sgemm(false, true, t, t, hd, 1, qh, qDim, kg, kvDim, 0, s, t)
            tk_causal_softmax(s, t, t, scale)
            sgemm(false, false, t, hd, t, 1, s, t, vg, kvDim, 0, ap + r0 * qDim + h * hd, qDim)
        }
    }
}

/// Backward of `attentionForward`: dq = dS K·s, dk = Σ_h dSᵀ Q·s, dv = Σ_h Pᵀ dO, with
/// dS = P ⊙ (dP − rowsum(P ⊙ dP)), dP = dO Vᵀ. Jobs are (sequence, KV head), so the heads that
/// share a KV head accumulate into it without races. dq, dk, dv are overwritten.
func attentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                       datt: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                       v: UnsafePointer<Float>, layout: RowLayout, heads: Int, kvHeads: Int, headDim hd: Int,
                       pool: WorkerPool) {
    let qDim = heads * hd, kvDim = kvHeads * hd, groups = heads / kvHeads
    let scale = 1 / Float(hd).squareRoot()
    let maxT = layout.lengths.max() ?? 0
    let jobs = layout.lengths.count * kvHeads
    nonisolated(unsafe) let (dqp, dkp, dvp, dop, qp, kp, vp) = (dq, dk, dv, datt, q, k, v)
    pool.parallelFor(jobs) { range in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(maxT * maxT, 1))
        let dp = UnsafeMutablePointer<Float>.allocate(capacity: max(maxT * maxT, 1))
        defer { p.deallocate(); dp.deallocate() }
        for job in range {
            let seq = job / kvHeads, g = job % kvHeads
            let t = layout.lengths[seq], r0 = layout.starts[seq]
            guard t > 0 else { continue }
            let kg = kp + r0 * kvDim + g * hd, vg = vp + r0 * kvDim + g * hd
            let dkg = dkp + r0 * kvDim + g * hd, dvg = dvp + r0 * kvDim + g * hd
            for h in (g * groups)..<((g + 1) * groups) {
                let qh = qp + r0 * qDim + h * hd, doh = dop + r0 * qDim + h * hd
                sgemm(false, true, t, t, hd, 1, qh, qDim, kg, kvDim, 0, p, t)
                tk_causal_softmax(p, t, t, scale)
                sgemm(false, true, t, t, hd, 1, doh, qDim, vg, kvDim, 0, dp, t)   // dP = dO Vᵀ
                tk_softmax_backward(dp, p, t, t, scale)                              // dS·scale
                let first: Float = h == g * groups ? 0 : 1
                sgemm(false, false, t, hd, t, 1, dp, t, kg, kvDim, 0, dqp + r0 * qDim + h * hd, qDim)
                sgemm(true, false, t, hd, t, 1, dp, t, qh, qDim, first, dkg, kvDim)
                sgemm(true, false, t, hd, t, 1, p, t, doh, qDim, first, dvg, kvDim)
            }
        }
    }
}
