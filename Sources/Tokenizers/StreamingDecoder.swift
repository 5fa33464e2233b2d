/// Turns ids into text one at a time as a model produces them, emitting only complete
/// characters: a UTF-8 sequence split across tokens (byte-level or `<0xXX>` byte fallback) is
/// held back until it completes. The concatenation of everything `push` and `finish` return
/// equals `decode` of all the ids.
///
/// It decodes a short window of ids — the stretch emitted last time, as context (a decoder may
/// strip a leading space only at the start), then the ids not yet emitted — and emits what the
/// window adds beyond its context, unless that ends in U+FFFD (an incomplete character).
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    /// The window: ids emitted last time (context), then ids not yet emitted.
    private var ids: [Int] = []
    private var readOffset = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text that is now complete (possibly empty).
    public mutating func push(_ id: Int) -> String {
        ids.append(id)
        let (prefix, full) = window()
        guard full.count > prefix.count, full.last != "\u{FFFD}", full.starts(with: prefix) else { return "" }
        // The ids just emitted become the next window's context, unless they decode to nothing
        // (a skipped special token): a context must show the decoder that text came before.
        if !tokenizer.decodeScalars(Array(ids[readOffset...]), skipSpecialTokens: skipSpecialTokens).isEmpty {
            ids.removeFirst(readOffset)
        }
        readOffset = ids.count
        return Array(full[prefix.count...]).string
    }

    /// The text still held back (an incomplete character decodes as U+FFFD, as `decode` does).
    public mutating func finish() -> String {
        let (prefix, full) = window()
        ids.removeAll()
        readOffset = 0
        let common = full.starts(with: prefix) ? prefix.count : min(prefix.count, full.count)
        return Array(full[common...]).string
    }

    /// The decoded context (ids already emitted) and the decoded whole window.
    private func window() -> (prefix: Scalars, full: Scalars) {
        (tokenizer.decodeScalars(Array(ids[..<readOffset]), skipSpecialTokens: skipSpecialTokens),
         tokenizer.decodeScalars(ids, skipSpecialTokens: skipSpecialTokens))
    }
}
