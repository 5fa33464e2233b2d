import LanguageModel
import TensorCore

/// Which part of a weight's gradient is wanted: all of it, some rows (FFN subkeys, `v` rows),
/// or some columns (FFN subvalues, `o` columns) — PKT.md's neurons.
public enum GradientSelection: Sendable, Equatable {
    case full
    case rows([Int])
    case columns([Int])

    /// Shape of the gradient of a `[rows, cols]` weight under this selection.
    func shape(rows: Int, cols: Int) -> [Int] {
        switch self {
        case .full: [rows, cols]
        case .rows(let r): [r.count, cols]
        case .columns(let c): [rows, c.count]
        }
    }
}

/// A delta added to a weight (DESIGN.md, Deltas): dense `[out, in]`, row-sparse (`values`
/// `[k, in]` at `indices`) or column-sparse (`values` `[out, k]`). ∂loss/∂Δ is ∂loss/∂W at the
/// delta's rows/columns, since the model computes with W + Δ.
public enum WeightDelta: Sendable {
    case dense(Tensor)
    case rows([Int], Tensor)
    case columns([Int], Tensor)

    var selection: GradientSelection {
        switch self {
        case .dense: .full
        case .rows(let r, _): .rows(r)
        case .columns(let c, _): .columns(c)
        }
    }

    var values: Tensor {
        switch self {
        case .dense(let t), .rows(_, let t), .columns(_, let t): t
        }
    }
}

/// A gradient buffer that accumulates (as PyTorch's `.grad`) over a selection of a weight.
public final class Gradient: @unchecked Sendable {
    public let selection: GradientSelection
    public let tensor: Tensor
    /// Row → position in `tensor` for a row selection (embedding rows are scattered one by one).
    private let rowSlot: [Int: Int]

    init(selection: GradientSelection, rows: Int, cols: Int) {
        self.selection = selection
        tensor = Tensor(shape: selection.shape(rows: rows, cols: cols))
        if case .rows(let r) = selection {
            rowSlot = Dictionary(r.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        } else {
            rowSlot = [:]
        }
    }

    /// Set by `zeroLazily()`: the tensor's contents count as zeros. The first full-selection
    /// product then overwrites it (beta 0) instead of a separate pass writing zeros over the
    /// whole gradient (2 GB of a 0.5B full fine-tune each step); anything else zeroes it first.
    private(set) var pendingZero = false

    func zeroLazily() { pendingZero = true }

    /// Writes the pending zeros, if any: before anything reads or partly updates the tensor.
    func materialize() {
        if pendingZero { tensor.zero(); pendingZero = false }
    }

    /// tensor += (dyᵀ · x) restricted to the selection; dy [n, out], x [n, in].
    func accumulateOuter(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, out: Int, in cols: Int,
                         scratch: Scratch, pool: WorkerPool) {
        if case .full = selection, pendingZero, n > 0 {
            pendingZero = false
            gemm(transA: true, transB: false, m: out, n: cols, k: n, dy, lda: out, x, ldb: cols,
                 beta: 0, tensor.data, ldc: cols, pool: pool)
            return
        }
        materialize()
        switch selection {
        case .full:
            gemm(transA: true, transB: false, m: out, n: cols, k: n, dy, lda: out, x, ldb: cols,
                 beta: 1, tensor.data, ldc: cols, pool: pool)
        case .rows(let rows):
            let k = rows.count
            let g = scratch.reserve(n * k)
            for t in 0..<n { for (j, r) in rows.enumerated() { g[t * k + j] = dy[t * out + r] } }
            gemm(transA: true, transB: false, m: k, n: cols, k: n, g, lda: k, x, ldb: cols,
                 beta: 1, tensor.data, ldc: cols, pool: pool)
        case .columns(let cs):
            let k = cs.count
            let g = scratch.reserve(n * k)
            for t in 0..<n { for (j, c) in cs.enumerated() { g[t * k + j] = x[t * cols + c] } }
            gemm(transA: true, transB: false, m: out, n: k, k: n, dy, lda: out, g, ldb: k,
                 beta: 1, tensor.data, ldc: k, pool: pool)
        }
    }

    /// Row `r` of the full gradient += values (`cols` floats): embedding lookups.
    func addRow(_ r: Int, _ values: UnsafePointer<Float>, cols: Int) {
        materialize()
        switch selection {
        case .full:
            axpy(cols, 1, values, tensor.data + r * cols)
        case .rows:
            if let slot = rowSlot[r] { axpy(cols, 1, values, tensor.data + slot * cols) }
        case .columns(let cs):
            let k = cs.count
            for (j, c) in cs.enumerated() { tensor.data[r * k + j] += values[c] }
        }
    }
}

/// A low-rank adapter on one weight: y += scale · B (A x), A `[r, in]`, B `[out, r]`
/// (PEFT's lora_A / lora_B).
public final class LoRAAdapter: @unchecked Sendable {
    public let rank: Int
    public let scale: Float
    public let a: Tensor
    public let b: Tensor
    public let gradA: Tensor
    public let gradB: Tensor
    /// x·Aᵀ of the last forward, [n, r]: the backward needs it.
    let xa = Scratch()

    public init(a: Tensor, b: Tensor, scale: Float) {
        precondition(a.shape.count == 2 && b.shape.count == 2 && a.shape[0] == b.shape[1], "LoRA: A [r, in] and B [out, r]")
        rank = a.shape[0]
        self.scale = scale
        self.a = a
        self.b = b
        gradA = Tensor(shape: a.shape)
        gradB = Tensor(shape: b.shape)
    }
}

/// One weight matrix `[out, in]` of the model as training sees it: the base weight in f32
/// (a view of the mmap'd file when it is stored in f32 and frozen, else an owned copy), an
/// optional bias, delta and LoRA adapter, and the gradients asked for.
public final class Linear: @unchecked Sendable {
    public let name: String
    public let outFeatures: Int
    public let inFeatures: Int
    /// The base weight [out, in] in f32. Read-only unless `isWritable`. Weights stored in
    /// bf16/f16 are widened on first use, so opening a model (and refusing a run that cannot
    /// fit) costs no memory.
    public var weight: UnsafeMutablePointer<Float> {
        if let w = view { return w }
        if let owned { return owned.data }
        let t = Tensor(shape: [outFeatures, inFeatures])
        if let stored {
            for r in 0..<outFeatures { stored.widenRow(r, into: t.data + r * inFeatures) }
        }
        owned = t
        return t.data
    }
    /// The mmap'd f32 weight (frozen), when it can be used in place.
    private var view: UnsafeMutablePointer<Float>?
    private let stored: WeightMatrix?
    /// Keeps the mapping that `stored` and `view` point into alive.
    private let storage: AnyObject?
    private var owned: Tensor?
    public var bias: Tensor?
    public var biasGradient: Tensor?
    public var weightGradient: Gradient?
    public var delta: WeightDelta? {
        didSet { deltaGradient = delta.map { Gradient(selection: $0.selection, rows: outFeatures, cols: inFeatures) } }
    }
    /// ∂loss/∂Δ for the current delta (shape of the delta's values), accumulated.
    public private(set) var deltaGradient: Gradient?
    public var lora: LoRAAdapter?
    /// W + Δ, rebuilt by `prepare()` at the start of every step (the delta may have changed).
    private var effective: Tensor?
    private let scratch = Scratch()

    init(name: String, matrix: WeightMatrix, storage: AnyObject) {
        self.name = name
        self.storage = storage
        outFeatures = matrix.rows
        inFeatures = matrix.cols
        stored = matrix
        if matrix.dtype == .f32, Int(bitPattern: matrix.base) % MemoryLayout<Float>.alignment == 0 {
            view = UnsafeMutablePointer(mutating: matrix.base.assumingMemoryBound(to: Float.self))
        }
    }

    init(name: String, tensor: Tensor) {
        self.name = name
        outFeatures = tensor.shape[0]
        inFeatures = tensor.shape[1]
        stored = nil
        storage = nil
        owned = tensor
    }

    public var isWritable: Bool { view == nil && owned != nil }
    public var parameterCount: Int { outFeatures * inFeatures + (bias?.count ?? 0) }

    /// Copies the base weight into owned memory so the optimizer (or a compensated LoRA
    /// start) can change it. Idempotent.
    public func makeWritable() {
        guard let v = view else { _ = weight; return }
        let t = Tensor(shape: [outFeatures, inFeatures])
        t.data.update(from: v, count: outFeatures * inFeatures)
        owned = t
        view = nil
    }

    /// The weight the forward multiplies by: W, or W + Δ.
    var forwardWeight: UnsafeMutablePointer<Float> { effective?.data ?? weight }

    func prepare() {
        guard let delta else { effective = nil; return }
        let e = effective ?? Tensor(shape: [outFeatures, inFeatures])
        e.data.update(from: weight, count: outFeatures * inFeatures)
        let cols = inFeatures
        switch delta {
        case .dense(let t):
            axpy(outFeatures * cols, 1, t.data, e.data)
        case .rows(let rows, let t):
            for (j, r) in rows.enumerated() { axpy(cols, 1, t.data + j * cols, e.data + r * cols) }
        case .columns(let cs, let t):
            let k = cs.count
            for r in 0..<outFeatures { for (j, c) in cs.enumerated() { e.data[r * cols + c] += t.data[r * k + j] } }
        }
        effective = e
    }

    /// out[n, out] (+)= x[n, in] · (W + Δ)ᵀ + bias + scale · (x Aᵀ) Bᵀ
    func forward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int,
                 accumulate: Bool = false, pool: WorkerPool) {
        let prof = StepProfiler.shared
        prof.time(prof.forwardPrefix + " gemm", flops: 2 * Double(n * outFeatures * inFeatures)) {
            gemm(transA: false, transB: true, m: n, n: outFeatures, k: inFeatures, x, lda: inFeatures,
                 forwardWeight, ldb: inFeatures, beta: accumulate ? 1 : 0, out, ldc: outFeatures, pool: pool)
        }
        if let bias { prof.time(prof.forwardPrefix + " elementwise") { tk_add_bias_swift(out, bias.data, n, outFeatures) } }
        if let lora {
            let r = lora.rank
            prof.time(prof.forwardPrefix + " lora gemm", flops: 2 * Double(n * r * (inFeatures + outFeatures))) {
                loraForward(lora, out, x, n: n, pool: pool)
            }
        }
    }

    private func loraForward(_ lora: LoRAAdapter, _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int, pool: WorkerPool) {
        do {
            let r = lora.rank
            let xa = lora.xa.reserve(n * r)
            gemm(transA: false, transB: true, m: n, n: r, k: inFeatures, x, lda: inFeatures,
                 lora.a.data, ldb: inFeatures, xa, ldc: r, pool: pool)
            gemm(transA: false, transB: true, m: n, n: outFeatures, k: r, alpha: lora.scale, xa, lda: r,
                 lora.b.data, ldb: r, beta: 1, out, ldc: outFeatures, pool: pool)
        }
    }

    /// Backward of `forward` for the same x: accumulates the gradients asked for, and writes
    /// (or adds, when `accumulate`) dx[n, in] = dy · (W + Δ) + scale · (dy B) A.
    func backward(dx: UnsafeMutablePointer<Float>?, accumulate: Bool = false, dy: UnsafePointer<Float>,
                  x: UnsafePointer<Float>, n: Int, pool: WorkerPool) {
        let prof = StepProfiler.shared
        let macs = Double(n * outFeatures * inFeatures)
        if let g = weightGradient {
            prof.time(prof.backwardPrefix + " dW gemm", flops: 2 * macs) {
                g.accumulateOuter(dy: dy, x: x, n: n, out: outFeatures, in: inFeatures, scratch: scratch, pool: pool)
            }
        }
        if let g = deltaGradient {
            prof.time(prof.backwardPrefix + " dDelta gemm") {
                g.accumulateOuter(dy: dy, x: x, n: n, out: outFeatures, in: inFeatures, scratch: scratch, pool: pool)
            }
        }
        if let g = biasGradient { prof.time(prof.backwardPrefix + " elementwise") { tk_bias_grad_swift(g.data, dy, n, outFeatures) } }
        if let dx {
            prof.time(prof.backwardPrefix + " dX gemm", flops: 2 * macs) {
                gemm(transA: false, transB: false, m: n, n: inFeatures, k: outFeatures, dy, lda: outFeatures,
                     forwardWeight, ldb: inFeatures, beta: accumulate ? 1 : 0, dx, ldc: inFeatures, pool: pool)
            }
        }
        if let lora {
            prof.time(prof.backwardPrefix + " lora gemm", flops: 4 * Double(n * lora.rank * (inFeatures + outFeatures))) {
                loraBackward(lora, dx: dx, dy: dy, x: x, n: n, pool: pool)
            }
        }
    }

    private func loraBackward(_ lora: LoRAAdapter, dx: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>,
                              x: UnsafePointer<Float>, n: Int, pool: WorkerPool) {
        do {
            let r = lora.rank
            // dB += s · dyᵀ (x Aᵀ);  d(xa) = s · dy B;  dA += d(xa)ᵀ x;  dx += d(xa) A
            gemm(transA: true, transB: false, m: outFeatures, n: r, k: n, alpha: lora.scale, dy, lda: outFeatures,
                 lora.xa.data, ldb: r, beta: 1, lora.gradB.data, ldc: r, pool: pool)
            let dxa = scratch.reserve(n * r)
            gemm(transA: false, transB: false, m: n, n: r, k: outFeatures, alpha: lora.scale, dy, lda: outFeatures,
                 lora.b.data, ldb: r, dxa, ldc: r, pool: pool)
            gemm(transA: true, transB: false, m: r, n: inFeatures, k: n, dxa, lda: r, x, ldb: inFeatures,
                 beta: 1, lora.gradA.data, ldc: inFeatures, pool: pool)
            if let dx {
                gemm(transA: false, transB: false, m: n, n: inFeatures, k: r, dxa, lda: r, lora.a.data, ldb: inFeatures,
                     beta: 1, dx, ldc: inFeatures, pool: pool)
            }
        }
    }

    /// W·x contribution of the adapter merged: the weight the model effectively uses,
    /// W + Δ + scale·B·A, as a new tensor (for tests and exports).
    public func mergedWeight() -> Tensor {
        prepare()
        let t = Tensor(shape: [outFeatures, inFeatures])
        t.data.update(from: forwardWeight, count: outFeatures * inFeatures)
        if let lora {
            gemm(transA: false, transB: false, m: outFeatures, n: inFeatures, k: lora.rank, alpha: lora.scale,
                 lora.b.data, lda: lora.rank, lora.a.data, ldb: inFeatures, beta: 1, t.data, ldc: inFeatures, pool: nil)
        }
        return t
    }
}

/// A vector parameter (a norm's weight) in f32, owned.
public final class VectorParameter: @unchecked Sendable {
    public let name: String
    public let value: Tensor
    public var gradient: Tensor?

    init(name: String, view: VectorView) {
        self.name = name
        value = Tensor(shape: [view.count])
        WeightMatrix(dtype: view.dtype, rows: 1, cols: view.count, base: view.base).widenRow(0, into: value.data)
    }
}
