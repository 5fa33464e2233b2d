/// Turns ids into text one at a time as a model produces them, emitting only complete
/// characters: a UTF-8 sequence split across tokens (byte-level or `<0xXX>` byte fallback) is
/// held back until it completes. The concatenation of everything `push` and `finish` return
/// equals `decode` of all the ids.
///
/// It decodes a short window of ids (those since the previous emission plus the ones before
/// them, for context such as a leading space that a decoder strips only at the start) and emits
/// what the window adds beyond its already-emitted prefix, unless that ends in U+FFFD (an
/// incomplete character).
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var prefixOffset = 0
    private var readOffset = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text that is now complete (possibly empty).
    public mutating func push(_ id: Int) -> String {
        ids.append(id)
        let prefix = tokenizer.decodeScalars(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let full = tokenizer.decodeScalars(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        guard full.count > prefix.count, full.last != "\u{FFFD}", full.starts(with: prefix) else { return "" }
        let text = Array(full[prefix.count...]).string
        // Keep the ids since the last emission as the next window's context.
        ids.removeFirst(readOffset)
        prefixOffset = 0
        readOffset = ids.count
        if readOffset > 0 {
            // Only the last emitted stretch is needed as context.
            prefixOffset = 0
        }
        return text
    }

    /// The text still held back (an incomplete character decodes as U+FFFD, as `decode` does).
    public mutating func finish() -> String {
        let prefix = tokenizer.decodeScalars(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let full = tokenizer.decodeScalars(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        ids.removeAll()
        prefixOffset = 0
        readOffset = 0
        guard full.count > prefix.count, full.starts(with: prefix) else { return "" }
        return Array(full[prefix.count...]).string
    }
}
