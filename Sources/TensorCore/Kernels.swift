import CKernels

// Swift entry points to the C kernels. Output first; shapes in the comments.

/// out[n, w.rows] (row stride ldo) = x[n, w.cols] (row stride ldx) · wᵀ, split over the pool by
/// output rows. Each element's reduction order is independent of n and of the split.
///
/// `activations: .bf16` with bf16 weights rounds x to bf16 first and multiplies on AVX-512 BF16's
/// dot-product instruction (emulated bit for bit where the CPU lacks it): twice the f32 FMA rate
/// where compute bounds the step (batched decode, prefill), different numerics (ActivationType).
/// Other weight dtypes ignore it.
public func matmul(_ out: UnsafeMutablePointer<Float>, ldo: Int,
                   _ x: UnsafePointer<Float>, ldx: Int, n: Int,
                   _ w: WeightMatrix, pool: WorkerPool, next: WeightMatrix? = nil,
                   activations: ActivationType = .f32) {
    guard n > 0 else { return }
    if activations == .bf16 && w.dtype == .bf16 {
        // 64-byte aligned, as the kernels load whole lines of it.
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * w.cols * 2, alignment: 64)
        defer { raw.deallocate() }
        let xb = raw.bindMemory(to: UInt16.self, capacity: n * w.cols)
        for t in 0..<n { gk_round_bf16(xb + t * w.cols, x + t * ldx, w.cols) }
        matmulBF16(out, ldo: ldo, xb, ldx: w.cols, n: n, w, pool: pool, next: next)
        return
    }
    let level = gk_current_level()   // the submitting thread's kernels, also on the workers
    let t = w.kernelType
    // `next`: the matrix the caller multiplies by next. Each chunk is told the same share of its
    // rows (gk_matmul_next prefetches their start during its last strip; a hint, no results change).
    func run(_ rows: Range<Int>) {
        let (hint, hintBytes) = nextShare(next, of: w, rows: rows)
        gk_matmul_next(level, t, out, ldo, x, ldx, w.base, w.cols, n, rows.lowerBound, rows.upperBound, hint, hintBytes)
    }
    forRowChunks(of: w, n: n, pool: pool, run)
}

/// run(rows) over all of w's rows: on the pool in chunks of whole 16-row blocks (full tiles), or
/// at once on this thread when the product is tiny.
private func forRowChunks(of w: WeightMatrix, n: Int, pool: WorkerPool, _ run: (Range<Int>) -> Void) {
    if w.rows * w.cols * n < 1 << 16 || pool.threads == 1 {
        run(0..<w.rows)
        return
    }
    pool.parallelFor(w.rows, granularity: 16) { range in run(range) }
}

/// The element type a product's activations take against bf16 weights (`--activations`).
/// `.f32` (the default) widens the weights and keeps f32 activations: the numerics the
/// transformers fixtures check to 1e-4. `.bf16` rounds each product's input rows to bf16 (only
/// those: the residual stream, norms, attention and the KV cache keep their own types) and uses
/// the dot-product instruction, twice the FMA's rate on CPUs with AVX-512 BF16 (emulated, slower,
/// on others); on the test fixtures logits move by up to 0.015 (ForwardTests).
public enum ActivationType: String, Sendable, CaseIterable {
    case f32, bf16
}

/// out[n, w.rows] = xb[n, w.cols] · wᵀ with bf16 weights and activations already rounded to bf16
/// (rows ldx elements apart), in the dot-product instruction's order (gk_matmul_bf16x): each
/// element bit-identical whatever n and the split.
public func matmulBF16(_ out: UnsafeMutablePointer<Float>, ldo: Int,
                       _ xb: UnsafePointer<UInt16>, ldx: Int, n: Int,
                       _ w: WeightMatrix, pool: WorkerPool, next: WeightMatrix? = nil) {
    precondition(w.dtype == .bf16, "matmulBF16 takes bf16 weights, not \(w.dtype)")
    guard n > 0 else { return }
    let path = gk_bf16x_path(gk_current_level())   // the submitting thread's, also on the workers
    func run(_ rows: Range<Int>) {
        let (hint, hintBytes) = nextShare(next, of: w, rows: rows)
        gk_matmul_bf16x(path, out, ldo, xb, ldx, w.base, w.cols, n, rows.lowerBound, rows.upperBound, hint, hintBytes)
    }
    forRowChunks(of: w, n: n, pool: pool, run)
}

/// How `matmul` computes with `activations: .bf16` (gk_bf16x_path): with the instruction, or
/// emulating it in AVX-512 or in scalar code. The raw values are the names the CLI prints.
public enum BF16ActivationPath: String, Sendable {
    case dpbf16
    case avx512Emulated = "avx512-emulated"
    case scalarEmulated = "scalar-emulated"
}

/// The path `matmul` takes with `activations: .bf16` on the calling thread.
public var bf16ActivationPath: BF16ActivationPath {
    switch gk_bf16x_path(gk_current_level()) {
    case Int32(GK_BF16X_DPBF16): .dpbf16
    case Int32(GK_BF16X_AVX512): .avx512Emulated
    default: .scalarEmulated
    }
}

/// Tests: emulate the dot-product instruction on the calling thread even where the CPU has it.
public func forceBF16ActivationEmulation(_ on: Bool) {
    _ = gk_force_bf16x_emulation(on ? 1 : 0)
}

/// The share of `next`'s rows that matches `rows` of `w` (the part of the next product the same
/// chunk will take), as the kernels' prefetch hint: its start and byte count.
private func nextShare(_ next: WeightMatrix?, of w: WeightMatrix, rows: Range<Int>) -> (UnsafeRawPointer?, Int) {
    guard let next else { return (nil, 0) }
    let rowBytes = next.cols * next.dtype.size
    let lo = rows.lowerBound * next.rows / w.rows, hi = rows.upperBound * next.rows / w.rows
    return (next.base + lo * rowBytes, (hi - lo) * rowBytes)
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

/// `attend` for `heads` query heads sharing one key/value head (grouped-query attention): head
/// h's query at `query + h·headDim`, its output at `out + h·headDim`, its weights at
/// `scratch + h·count` (`heads · count` floats). Each head's results equal `attend`'s bit for
/// bit; the keys and values are read once for up to 4 heads (gk_attend_group). `next`: the key
/// and value bytes the caller reads next, requested toward L2 meanwhile (a hint).
@inline(__always)
public func attendGroup(_ out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<Float>,
                        values: UnsafePointer<Float>, stride: Int, count: Int, headDim: Int, scale: Float,
                        scratch: UnsafeMutablePointer<Float>,
                        next: (keys: UnsafeRawPointer, values: UnsafeRawPointer, bytes: Int)? = nil) {
    gk_attend_group(out, queries, heads, keys, values, stride, count, headDim, scale, scratch,
                    next?.keys, next?.values, next?.bytes ?? 0)
}

/// `attendGroup` over a bf16 cache (as `attendBF16`).
@inline(__always)
public func attendGroupBF16(_ out: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<UInt16>,
                            values: UnsafePointer<UInt16>, stride: Int, count: Int, headDim: Int, scale: Float,
                            scratch: UnsafeMutablePointer<Float>,
                            next: (keys: UnsafeRawPointer, values: UnsafeRawPointer, bytes: Int)? = nil) {
    gk_attend_group_bf16(out, queries, heads, keys, values, stride, count, headDim, scale, scratch,
                         next?.keys, next?.values, next?.bytes ?? 0)
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
