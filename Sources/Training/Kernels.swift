import CTrainKernels

// Thin Swift spellings of the C training kernels used from more than one file.

@inline(__always)
func tk_add_bias_swift(_ out: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ rows: Int, _ n: Int) {
    tk_add_bias(out, b, rows, n)
}

@inline(__always)
func tk_bias_grad_swift(_ db: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ n: Int) {
    tk_bias_grad(db, dy, rows, n)
}

/// The SIMD family the training kernels chose on this CPU.
public var trainingKernelName: String { String(cString: tk_kernel_name()) }
