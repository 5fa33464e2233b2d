/// A span of text on its way to the model: either still text, or already an added token.
struct Piece {
    var text: Scalars
    /// Set when the span is an added token (its id).
    var addedID: Int?
    /// Whether the span begins at offset 0 of the original input (Metaspace's `first`).
    var atOrigin: Bool
}

/// A `pre_tokenizer` of tokenizer.json: splits one span into the words the model sees.
protocol PreTokenizer: Sendable {
    func split(_ piece: Piece) -> [Piece]
}

enum PreTokenizerType: String {
    case sequence = "Sequence", byteLevel = "ByteLevel", split = "Split", digits = "Digits"
    case metaspace = "Metaspace", whitespaceSplit = "WhitespaceSplit", punctuation = "Punctuation"
}

/// `SplitDelimiterBehavior` of tokenizers.
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

func makePreTokenizer(_ r: JSONReader) throws(TokenizerError) -> any PreTokenizer {
    switch try r.type(PreTokenizerType.self) {
    case .sequence:
        var items: [any PreTokenizer] = []
        for p in try r.required("pretokenizers").array() { items.append(try makePreTokenizer(p)) }
        return SequencePreTokenizer(items: items)
    case .byteLevel:
        return ByteLevelPreTokenizer(addPrefixSpace: try r.bool("add_prefix_space", default: true),
                                     useRegex: try r.bool("use_regex", default: true))
    case .split:
        let name = try r.required("behavior").string()
        guard let behavior = SplitBehavior(rawValue: name) else {
            throw .invalidValue(path: r.child("behavior"), problem: "unknown behavior '\(name)'")
        }
        return SplitPreTokenizer(pattern: try SplitPattern.parse(try r.required("pattern")),
                                 behavior: behavior, invert: try r.bool("invert", default: false))
    case .digits:
        return DigitsPreTokenizer(individual: try r.bool("individual_digits", default: false))
    case .metaspace:
        return try MetaspacePreTokenizer(r)
    case .whitespaceSplit:
        return WhitespaceSplitPreTokenizer()
    case .punctuation:
        let name = try r.string("behavior", default: "Isolated")
        guard let behavior = SplitBehavior(rawValue: name) else {
            throw .invalidValue(path: r.child("behavior"), problem: "unknown behavior '\(name)'")
        }
        return PunctuationPreTokenizer(behavior: behavior)
    }
}

/// Cuts `piece` at `found` (sorted, non-overlapping match ranges) with tokenizers'
/// `NormalizedString::split` semantics; empty spans are dropped.
func splitPiece(_ piece: Piece, matches found: [Range<Int>], behavior: SplitBehavior,
                invert: Bool = false) -> [Piece] {
    let s = piece.text
    if s.isEmpty { return [] }
    // (range, isMatch) covering the whole text.
    var spans: [(Range<Int>, Bool)] = []
    spans.reserveCapacity(found.count * 2 + 1)
    var prev = 0
    for m in found {
        if prev != m.lowerBound { spans.append((prev..<m.lowerBound, invert)) }
        spans.append((m, !invert))
        prev = m.upperBound
    }
    if prev != s.count { spans.append((prev..<s.count, invert)) }

    var kept: [Range<Int>] = []
    switch behavior {
    case .isolated:
        kept = spans.map(\.0)
    case .removed:
        kept = spans.filter { !$0.1 }.map(\.0)
    case .contiguous:
        var previous = false
        for (r, isMatch) in spans {
            if isMatch == previous, let last = kept.last {
                kept[kept.count - 1] = last.lowerBound..<r.upperBound
            } else {
                kept.append(r)
            }
            previous = isMatch
        }
    case .mergedWithPrevious:
        var previous = false
        for (r, isMatch) in spans {
            if isMatch && !previous, let last = kept.last {
                kept[kept.count - 1] = last.lowerBound..<r.upperBound
            } else {
                kept.append(r)
            }
            previous = isMatch
        }
    case .mergedWithNext:
        var previous = false
        for (r, isMatch) in spans.reversed() {
            if isMatch && !previous, let last = kept.last {
                kept[kept.count - 1] = r.lowerBound..<last.upperBound
            } else {
                kept.append(r)
            }
            previous = isMatch
        }
        kept.reverse()
    }
    var out: [Piece] = []
    out.reserveCapacity(kept.count)
    for r in kept where !r.isEmpty {
        out.append(Piece(text: Array(s[r]), addedID: nil, atOrigin: piece.atOrigin && r.lowerBound == 0))
    }
    return out
}

struct SequencePreTokenizer: PreTokenizer {
    let items: [any PreTokenizer]
    func split(_ piece: Piece) -> [Piece] {
        var pieces = [piece]
        for p in items { pieces = pieces.flatMap { p.split($0) } }
        return pieces
    }
}

/// GPT-2's pre-tokenizer: optional prefix space, the GPT-2 regex, then every byte of the UTF-8
/// encoding mapped to its printable stand-in (`ByteLevelAlphabet`).
struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool

    func split(_ piece: Piece) -> [Piece] {
        var p = piece
        if p.text.isEmpty { return [] }
        if addPrefixSpace && p.text.first != " " { p.text.insert(" ", at: 0) }
        let words = useRegex ? splitPiece(p, matches: SplitPattern.gpt2.matches(in: p.text), behavior: .isolated) : [p]
        return words.map { w in
            var mapped = Scalars()
            mapped.reserveCapacity(w.text.count)
            for c in w.text {
                if c.isASCII {
                    mapped.append(ByteLevelAlphabet.byteToScalar[Int(c.value)])
                } else {
                    for b in UTF8.encode(c)! { mapped.append(ByteLevelAlphabet.byteToScalar[Int(b)]) }
                }
            }
            return Piece(text: mapped, addedID: nil, atOrigin: w.atOrigin)
        }
    }
}

struct SplitPreTokenizer: PreTokenizer {
    let pattern: SplitPattern
    let behavior: SplitBehavior
    let invert: Bool
    func split(_ piece: Piece) -> [Piece] {
        splitPiece(piece, matches: pattern.matches(in: piece.text), behavior: behavior, invert: invert)
    }
}

/// Each numeric scalar (Rust `char::is_numeric`) alone, or runs of them.
struct DigitsPreTokenizer: PreTokenizer {
    let individual: Bool
    func split(_ piece: Piece) -> [Piece] {
        let found = piece.text.indices.filter { UnicodeClass.isNumeric(piece.text[$0]) }.map { $0..<$0 + 1 }
        if found.isEmpty { return piece.text.isEmpty ? [] : [piece] }
        return splitPiece(piece, matches: found, behavior: individual ? .isolated : .contiguous)
    }
}

/// SentencePiece's whitespace handling: spaces become "▁", optionally prepended.
struct MetaspacePreTokenizer: PreTokenizer {
    enum PrependScheme: String { case always, first, never }
    let replacement: Unicode.Scalar
    let scheme: PrependScheme
    let splitWords: Bool

    init(replacement: Unicode.Scalar, scheme: PrependScheme, splitWords: Bool) {
        self.replacement = replacement
        self.scheme = scheme
        self.splitWords = splitWords
    }

    init(_ r: JSONReader) throws(TokenizerError) {
        let rep = Array(try r.string("replacement", default: "▁").unicodeScalars)
        guard rep.count == 1 else {
            throw .invalidValue(path: r.child("replacement"), problem: "must be one character")
        }
        replacement = rep[0]
        if let s = r.optional("prepend_scheme") {
            let name = try s.string()
            guard let scheme = PrependScheme(rawValue: name) else {
                throw .invalidValue(path: s.path, problem: "unknown prepend_scheme '\(name)'")
            }
            self.scheme = scheme
        } else {
            // Files older than the prepend_scheme field carry add_prefix_space.
            scheme = try r.bool("add_prefix_space", default: true) ? .always : .never
        }
        splitWords = try r.bool("split", default: true)
    }

    func split(_ piece: Piece) -> [Piece] {
        var p = piece
        if p.text.isEmpty { return [] }
        for k in p.text.indices where p.text[k] == " " { p.text[k] = replacement }
        switch scheme {
        case .always where p.text.first != replacement: p.text.insert(replacement, at: 0)
        case .first where p.text.first != replacement && p.atOrigin: p.text.insert(replacement, at: 0)
        default: break
        }
        guard splitWords else { return [p] }
        let found = p.text.indices.filter { p.text[$0] == replacement }.map { $0..<$0 + 1 }
        return splitPiece(p, matches: found, behavior: .mergedWithNext)
    }
}

/// Splits on whitespace runs, dropping them (`\w+|[^\w\s]+` in tokenizers).
struct WhitespaceSplitPreTokenizer: PreTokenizer {
    func split(_ piece: Piece) -> [Piece] {
        var found: [Range<Int>] = []
        var i = 0
        let s = piece.text
        while i < s.count {
            if UnicodeClass.isWhitespace(s[i]) {
                var j = i + 1
                while j < s.count && UnicodeClass.isWhitespace(s[j]) { j += 1 }
                found.append(i..<j)
                i = j
            } else {
                i += 1
            }
        }
        return splitPiece(piece, matches: found, behavior: .removed)
    }
}

/// Splits on punctuation scalars (Unicode P* categories and ASCII punctuation).
struct PunctuationPreTokenizer: PreTokenizer {
    let behavior: SplitBehavior
    func split(_ piece: Piece) -> [Piece] {
        let found = piece.text.indices.filter { isPunctuation(piece.text[$0]) }.map { $0..<$0 + 1 }
        return splitPiece(piece, matches: found, behavior: behavior)
    }

    private func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII {
            let v = c.value
            return (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v)
        }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}
