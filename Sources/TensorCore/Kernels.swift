import CKernels

// Swift entry points to the C kernels. Output first; shapes in the comments.

/// out[n, w.rows] (row stride ldo) = x[n, w.cols] (row stride ldx) · wᵀ, split over the pool by
/// output rows. Each element's reduction order is independent of n and of the split.
public func matmul(_ out: UnsafeMutablePointer<Float>, ldo: Int,
                   _ x: UnsafePointer<Float>, ldx: Int, n: Int,
                   _ w: WeightMatrix, pool: WorkerPool, next: WeightMatrix? = nil) {
    guard n > 0 else { return }
    // Chunks of whole 16-row blocks keep the tiles full; tiny matrices run on one thread.
    let work = w.rows * w.cols * max(n, 1)
    let level = gk_current_level()   // the submitting thread's kernels, also on the workers
    let t = w.kernelType
    // `next`: the matrix the caller multiplies by next. Each chunk is told the same share of its
    // rows (gk_matmul_next prefetches their start during its last strip; a hint, no results change).
    func run(_ rows: Range<Int>) {
        var hint: UnsafeRawPointer? = nil, hintBytes = 0
        if let next {
            let rowBytes = next.cols * next.dtype.size
            let lo = rows.lowerBound * next.rows / w.rows, hi = rows.upperBound * next.rows / w.rows
            hint = next.base + lo * rowBytes
            hintBytes = (hi - lo) * rowBytes
        }
        gk_matmul_next(level, t, out, ldo, x, ldx, w.base, w.cols, n, rows.lowerBound, rows.upperBound, hint, hintBytes)
    }
    if work < 1 << 16 || pool.threads == 1 {
        run(0..<w.rows)
        return
    }
    pool.parallelFor(w.rows, granularity: 16) { range in run(range) }
}

/// out[n] = x[n] / sqrt(mean(x²) + eps) ⊙ weight
public func rmsNorm(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                    weight: UnsafeRawPointer, dtype: DType, count: Int, eps: Float) {
    gk_rmsnorm(out, x, weight, dtype.kernelType, count, eps)
}

/// Σ a[i]·b[i] in a fixed order.
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    gk_dot(a, b, count)
}

/// y += a·x
@inline(__always)
public func axpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, count: Int) {
    gk_axpy(y, a, x, count)
}

/// RoPE in place, rotate_half convention, on `heads` heads of `headDim` floats: (a, b) =
/// (p[i], p[i + headDim/2]) → (a·cos − b·sin, b·cos + a·sin), each product rounded (gk_rope).
@inline(__always)
public func rope(_ p: UnsafeMutablePointer<Float>, heads: Int, headDim: Int,
                 cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
    gk_rope(p, heads, headDim, cos, sin)
}

/// One query head's causal attention over `count` cached positions (key/value j at
/// `keys/values + j·stride`): softmax((q·k_j)·scale) then Σ_j p_j·v_j, in a fixed order per
/// query (gk_attend). `scratch` holds `count` floats: the weights p_j on return.
@inline(__always)
public func attend(_ out: UnsafeMutablePointer<Float>, query: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                   values: UnsafePointer<Float>, stride: Int, count: Int, headDim: Int, scale: Float,
                   scratch: UnsafeMutablePointer<Float>) {
    gk_attend(out, query, keys, values, stride, count, headDim, scale, scratch)
}

/// Asks for `bytes` from `p` to be brought into L2 (software prefetch; a hint, nothing is read).
@inline(__always)
public func prefetchL2(_ p: UnsafeRawPointer, bytes: Int) {
    gk_prefetch_l2(p, bytes)
}

/// gate = silu(gate) ⊙ up
public func swiGLU(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    gk_swiglu(gate, up, count)
}

/// Forces a kernel family on the calling thread for tests/benchmarks ("avx512", "avx2",
/// "scalar"; nil = detect). Other threads keep theirs.
@discardableResult
public func forceKernels(_ name: String?) -> Bool {
    if let name { return name.withCString { gk_force_kernels($0) } != 0 }
    return gk_force_kernels(nil) != 0
}

/// dst[i] = src[i] rounded to bfloat16 (to nearest, ties to even, as PyTorch), as raw bits.
@inline(__always)
public func roundToBF16(_ dst: UnsafeMutablePointer<UInt16>, _ src: UnsafePointer<Float>, count: Int) {
    gk_round_bf16(dst, src, count)
}

/// `attend` over a bf16 cache (keys and values bf16, widened exactly in registers): the same
/// result as `attend` over f32 rows holding the widened values, bit for bit (gk_attend_bf16).
@inline(__always)
public func attendBF16(_ out: UnsafeMutablePointer<Float>, query: UnsafePointer<Float>, keys: UnsafePointer<UInt16>,
                       values: UnsafePointer<UInt16>, stride: Int, count: Int, headDim: Int, scale: Float,
                       scratch: UnsafeMutablePointer<Float>) {
    gk_attend_bf16(out, query, keys, values, stride, count, headDim, scale, scratch)
}
