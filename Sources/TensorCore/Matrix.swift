import CKernels

/// A non-owning view of a row-major weight matrix `[rows, cols]` in its stored dtype: usually a
/// tensor inside an mmap'd safetensors file. The owner of the memory must outlive the view.
/// The pointer may be unaligned (safetensors does not promise alignment): kernels load unaligned.
public struct WeightMatrix: @unchecked Sendable {
    public let dtype: DType
    public let rows: Int
    public let cols: Int
    public let base: UnsafeRawPointer

    public init(dtype: DType, rows: Int, cols: Int, base: UnsafeRawPointer) {
        precondition(dtype == .f32 || dtype == .bf16 || dtype == .f16, "unsupported weight dtype \(dtype)")
        self.dtype = dtype
        self.rows = rows
        self.cols = cols
        self.base = base
    }

    public var byteCount: Int { rows * cols * dtype.size }

    var kernelType: gk_dtype {
        switch dtype {
        case .bf16: GK_BF16
        case .f16: GK_F16
        default: GK_F32
        }
    }

    /// Row `r` widened to f32 into `dst` (`cols` floats): embedding lookup.
    public func widenRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        gk_widen(kernelType, dst, base + r * cols * dtype.size, cols)
    }

    /// Element `(r, c)` as f32 (slow: for tests and odd reads).
    public func element(_ r: Int, _ c: Int) -> Float {
        var v: Float = 0
        gk_widen(kernelType, &v, base + (r * cols + c) * dtype.size, 1)
        return v
    }
}

public extension DType {
    var kernelType: gk_dtype {
        switch self {
        case .bf16: GK_BF16
        case .f16: GK_F16
        default: GK_F32
        }
    }
}
