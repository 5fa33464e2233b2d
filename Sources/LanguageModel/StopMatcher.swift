/// Finds stop strings in streamed text. Text that might be the start of a stop string is held
/// back until it is known not to be, so a stream never shows part of a stop string; the stop
/// string itself is never emitted (OpenAI's `stop` semantics).
public struct StopMatcher: Sendable {
    public let stops: [String]
    private var pending = ""
    public private(set) var stopped = false

    public init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }
    }

    /// Adds newly decoded text; returns what can be shown now.
    public mutating func push(_ text: String) -> String {
        guard !stopped else { return "" }
        pending += text
        guard !stops.isEmpty else {
            defer { pending = "" }
            return pending
        }
        // The earliest complete stop string ends the text.
        var cut: String.Index?
        for stop in stops {
            if let r = pending.range(of: stop), cut == nil || r.lowerBound < cut! { cut = r.lowerBound }
        }
        if let cut {
            stopped = true
            defer { pending = "" }
            return String(pending[..<cut])
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        var hold = 0
        for stop in stops {
            var n = min(stop.count - 1, pending.count)
            while n > hold {
                if pending.hasSuffix(stop.prefix(n)) { hold = n; break }
                n -= 1
            }
        }
        let emitEnd = pending.index(pending.endIndex, offsetBy: -hold)
        defer { pending = String(pending[emitEnd...]) }
        return String(pending[..<emitEnd])
    }

    /// At the end of generation: whatever was held back.
    public mutating func finish() -> String {
        defer { pending = "" }
        return stopped ? "" : pending
    }
}
