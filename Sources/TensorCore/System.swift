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

    /// Bytes of a transparent huge page (x86-64 Linux), which the weights' mapping
    /// (SafeTensorsFile) and the bandwidth probe's buffer (Probes) are aligned to.
    public static let hugePageBytes = 2 << 20

    /// The first huge-page boundary at or after `p`: inside any reservation of `hugePageBytes`
    /// more than is needed from `p`.
    public static func hugePageBoundary(atOrAfter p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        p + ((hugePageBytes - Int(bitPattern: p) % hugePageBytes) % hugePageBytes)
    }
}
