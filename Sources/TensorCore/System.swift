import COpenBLAS
import CKernels

/// Facts about the machine that benchmarks and logs print.
public enum SystemInfo {
    /// The kernel OpenBLAS chose for this CPU (it can misdetect new CPUs; OPENBLAS_CORETYPE
    /// overrides it and must be left alone).
    public static var openBLASCoreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The SIMD kernel family Graft's own kernels run with on this CPU.
    public static var kernelName: String { String(cString: gk_kernel_name()) }

    public static var cpuFeatures: gk_cpu_features { gk_detect_cpu() }
}
