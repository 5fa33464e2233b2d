import Foundation

/// Where a forward step's time goes, by phase: wall time of the submitting thread (which runs
/// every phase and waits for the pool's workers inside the parallel ones) and its CPU time (on
/// a loaded machine wall time includes waiting for a core; with one thread, CPU time is the
/// step's work). Off unless a caller sets `Model.profile`: then each phase boundary reads the
/// two clocks.
public final class ForwardProfile: @unchecked Sendable {
    public enum Phase: Int, CaseIterable, Sendable {
        case setup, embed, norms, q, k, v, ropeCache, attention, o, residual, gate, up, swiglu, down,
             finalNorm, lmHead, logitsOut

        public var name: String {
            switch self {
            case .setup: "setup+alloc"
            case .embed: "embed"
            case .norms: "rmsnorm"
            case .q: "q_proj"
            case .k: "k_proj"
            case .v: "v_proj"
            case .ropeCache: "rope+kv write"
            case .attention: "attention"
            case .o: "o_proj"
            case .residual: "residual add"
            case .gate: "gate_proj"
            case .up: "up_proj"
            case .swiglu: "swiglu"
            case .down: "down_proj"
            case .finalNorm: "final norm+alloc"
            case .lmHead: "lm_head"
            case .logitsOut: "logits copy-out"
            }
        }
    }

    /// Wall nanoseconds per phase, summed over the steps since the last `reset`.
    public private(set) var nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
    /// The submitting thread's CPU nanoseconds per phase.
    public private(set) var cpuNanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
    public private(set) var steps = 0
    private var last: UInt64 = 0
    private var lastCPU: UInt64 = 0

    public init() {}

    public func reset() {
        nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
        cpuNanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
        steps = 0
    }

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    @inline(__always) static func threadCPU() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Starts a step: the next `mark` charges the time from here.
    func begin() {
        steps += 1
        last = Self.now()
        lastCPU = Self.threadCPU()
    }

    /// Charges the time since the previous mark (or `begin`) to `phase`.
    @inline(__always) func mark(_ phase: Phase) {
        let t = Self.now(), c = Self.threadCPU()
        nanoseconds[phase.rawValue] &+= t &- last
        cpuNanoseconds[phase.rawValue] &+= c &- lastCPU
        last = t
        lastCPU = c
    }
}
