import Foundation

/// Where a forward step's time goes, by phase (wall time of the submitting thread, which runs
/// every phase and waits for the pool's workers inside the parallel ones). Off unless a caller
/// sets `Model.profile`: then each phase boundary reads the clock once.
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

    /// Nanoseconds per phase, summed over the steps since the last `reset`.
    public private(set) var nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
    public private(set) var steps = 0
    private var last: UInt64 = 0

    public init() {}

    public func reset() {
        nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
        steps = 0
    }

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Starts a step: the next `mark` charges the time from here.
    func begin() {
        steps += 1
        last = Self.now()
    }

    /// Charges the time since the previous mark (or `begin`) to `phase`.
    @inline(__always) func mark(_ phase: Phase) {
        let t = Self.now()
        nanoseconds[phase.rawValue] &+= t &- last
        last = t
    }
}
