import Foundation

/// Wall time of a training step by phase, for `graft finetune --bench --bench-profile`: where a
/// step's time goes (GEMMs by role, attention, elementwise kernels, cross-entropy, optimizer).
/// Off by default; when off every probe is one branch. Phases are timed on the calling
/// thread around whole pool-parallel calls, so they add up to the step's wall time.
public final class StepProfiler: @unchecked Sendable {
    public static let shared = StepProfiler()

    public var enabled = false
    /// Set while the backward recomputes a layer's forward (activation checkpointing).
    var recomputing = false
    /// Set around the lm head's products (its GEMMs are reported apart from the layers').
    var lmHead = false

    public struct Entry: Sendable {
        public var seconds = 0.0
        public var flops = 0.0
        public var calls = 0
    }
    public private(set) var entries: [String: Entry] = [:]
    public private(set) var order: [String] = []

    public func reset() { entries = [:]; order = [] }

    @inline(__always)
    func time<T>(_ phase: @autoclosure () -> String, flops: @autoclosure () -> Double = 0, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        add(phase(), seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, flops: flops())
        return r
    }

    func add(_ phase: String, seconds: Double, flops: Double) {
        if entries[phase] == nil { order.append(phase) }
        entries[phase, default: Entry()].seconds += seconds
        entries[phase, default: Entry()].flops += flops
        entries[phase, default: Entry()].calls += 1
    }

    /// Prefix of a forward product or kernel's phase: "fwd", "recompute" or "lm_head".
    var forwardPrefix: String { lmHead ? "lm_head" : recomputing ? "recompute" : "fwd" }
    var backwardPrefix: String { lmHead ? "lm_head" : "bwd" }

    /// One line per phase, largest first, with its share of `total` seconds and, for
    /// products, the GFLOP/s it ran at.
    public func report(total: Double, steps: Int) -> String {
        var lines: [String] = []
        let sorted = entries.sorted { $0.value.seconds > $1.value.seconds }
        var covered = 0.0
        for (name, e) in sorted {
            covered += e.seconds
            var line = "  " + name.padding(toLength: 24, withPad: " ", startingAt: 0)
                + String(format: " %8.3f s/step %5.1f%%", e.seconds / Double(steps), 100 * e.seconds / total)
            if e.flops > 0 { line += String(format: "  %6.1f GFLOP/s", e.flops / e.seconds / 1e9) }
            line += "  (\(e.calls / steps) calls)"
            lines.append(line)
        }
        lines.append("  " + "(untimed)".padding(toLength: 24, withPad: " ", startingAt: 0)
                     + String(format: " %8.3f s/step %5.1f%%", (total - covered) / Double(steps), 100 * (total - covered) / total))
        return lines.joined(separator: "\n")
    }
}

/// Shorthand for the shared profiler's probe.
@inline(__always)
func profile<T>(_ phase: @autoclosure () -> String, flops: @autoclosure () -> Double = 0, _ body: () throws -> T) rethrows -> T {
    try StepProfiler.shared.time(phase(), flops: flops(), body)
}
