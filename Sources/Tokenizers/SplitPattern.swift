/// What a `Split` pre-tokenizer or a `Replace` normalizer searches for, and how.
///
/// The two regexes every byte-level Llama-family tokenizer uses (GPT-2's, and Qwen2's which
/// Llama-3 shares but for `\p{N}{1,3}`) are matched by hand over Unicode scalars: this is exact
/// (the classes are in `UnicodeClass`) and much faster than a general engine. Any other regex
/// falls back to Swift `Regex` with Unicode-scalar semantics, whose syntax and classes are close
/// to, but not guaranteed identical with, Oniguruma's.
enum SplitPattern: Sendable {
    case gpt2
    /// Qwen2 (`maxDigits` 1) and Llama-3 (`maxDigits` 3).
    case qwen2(maxDigits: Int)
    case literal([Unicode.Scalar])
    case regex(RegexBox)

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// A `{"Regex": ...}` or `{"String": ...}` pattern object from tokenizer.json.
    static func parse(_ r: JSONReader) throws(TokenizerError) -> SplitPattern {
        if let s = r.optional("String") { return .literal(Array(try s.string().unicodeScalars)) }
        if let re = r.optional("Regex") {
            let source = try re.string()
            switch source {
            case gpt2Source: return .gpt2
            case qwen2Source: return .qwen2(maxDigits: 1)
            case llama3Source: return .qwen2(maxDigits: 3)
            default: return .regex(try RegexBox(source, path: re.path))
            }
        }
        throw .invalidValue(path: r.path, problem: "expected {\"String\": ...} or {\"Regex\": ...}")
    }

    /// Non-overlapping matches, leftmost first, as scalar-index ranges.
    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case .gpt2: return HandMatcher(s).all(qwen: false, maxDigits: 0)
        case .qwen2(let maxDigits): return HandMatcher(s).all(qwen: true, maxDigits: maxDigits)
        case .literal(let needle): return literalMatches(needle, in: s)
        case .regex(let box): return box.matches(in: s)
        }
    }

    private func literalMatches(_ needle: [Unicode.Scalar], in s: [Unicode.Scalar]) -> [Range<Int>] {
        guard !needle.isEmpty, s.count >= needle.count else { return [] }
        var out: [Range<Int>] = []
        var i = 0
        let first = needle[0]
        while i + needle.count <= s.count {
            if s[i] == first && s[i..<i + needle.count].elementsEqual(needle) {
                out.append(i..<i + needle.count)
                i += needle.count
            } else {
                i += 1
            }
        }
        return out
    }
}

/// Swift `Regex` for patterns that are not hand-matched. `Regex` is not `Sendable`, but a
/// compiled regex is immutable; a fresh copy is used per call.
struct RegexBox: @unchecked Sendable {
    let source: String
    private let regex: Regex<AnyRegexOutput>

    init(_ source: String, path: String) throws(TokenizerError) {
        self.source = source
        // Non-ASCII characters are written as \u{...}: Swift's parser refuses a literal
        // combining mark after a metacharacter ("[\u{300}-...]"), Oniguruma accepts it.
        var escaped = ""
        for c in source.unicodeScalars {
            if c.isASCII { escaped.unicodeScalars.append(c) } else { escaped += "\\u{\(String(c.value, radix: 16))}" }
        }
        do {
            regex = try Regex(escaped).matchingSemantics(.unicodeScalar)
        } catch {
            throw .invalidValue(path: path, problem: "regex not supported: \(error)")
        }
    }

    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: s)
        let text = String(view)
        var out: [Range<Int>] = []
        var lastIndex = text.startIndex
        var lastOffset = 0
        func offset(_ idx: String.Index) -> Int {
            lastOffset += text.unicodeScalars.distance(from: lastIndex, to: idx)
            lastIndex = idx
            return lastOffset
        }
        for m in text.matches(of: regex) {
            let lo = offset(m.range.lowerBound)
            let hi = offset(m.range.upperBound)
            if hi > lo { out.append(lo..<hi) }
        }
        return out
    }
}

/// The GPT-2 and Qwen2 regexes, alternative by alternative, with Oniguruma's leftmost-first
/// backtracking semantics worked out for each (see the comments on `next`).
struct HandMatcher {
    let s: [Unicode.Scalar]
    let cls: [UInt8]
    static let letter: UInt8 = 1, number: UInt8 = 2, space: UInt8 = 4, crlf: UInt8 = 8

    init(_ s: [Unicode.Scalar]) {
        self.s = s
        var cls = [UInt8](repeating: 0, count: s.count)
        for (k, c) in s.enumerated() {
            if UnicodeClass.isLetter(c) { cls[k] = Self.letter }
            else if UnicodeClass.isNumber(c) { cls[k] = Self.number }
            else if UnicodeClass.isWhitespace(c) {
                cls[k] = Self.space | ((c == "\r" || c == "\n") ? Self.crlf : 0)
            }
        }
        self.cls = cls
    }

    func all(qwen: Bool, maxDigits: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(s.count / 3 + 1)
        var i = 0
        while i < s.count {
            let e = qwen ? nextQwen(i, maxDigits: maxDigits) : nextGPT2(i)
            out.append(i..<e)
            i = e
        }
        return out
    }

    @inline(__always) func isL(_ k: Int) -> Bool { k < s.count && cls[k] == Self.letter }
    @inline(__always) func isN(_ k: Int) -> Bool { k < s.count && cls[k] == Self.number }
    @inline(__always) func isWS(_ k: Int) -> Bool { k < s.count && cls[k] & Self.space != 0 }
    @inline(__always) func isCRLF(_ k: Int) -> Bool { k < s.count && cls[k] & Self.crlf != 0 }
    /// `[^\s\p{L}\p{N}]`
    @inline(__always) func isOther(_ k: Int) -> Bool { k < s.count && cls[k] == 0 }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, case-insensitive for Qwen2 (`(?i:...)`; Oniguruma folds
    /// U+017F LATIN SMALL LETTER LONG S to `s`).
    func contraction(_ i: Int, caseInsensitive ci: Bool) -> Int? {
        guard s[i] == "'", i + 1 < s.count else { return nil }
        func eq(_ k: Int, _ lower: Unicode.Scalar) -> Bool {
            guard k < s.count else { return false }
            let c = s[k]
            if c == lower { return true }
            guard ci else { return false }
            if c.value == lower.value - 32 { return true }
            return lower == "s" && c == "\u{17F}"
        }
        if eq(i + 1, "s") || eq(i + 1, "t") || eq(i + 1, "m") || eq(i + 1, "d") { return i + 2 }
        if (eq(i + 1, "r") && eq(i + 2, "e")) || (eq(i + 1, "v") && eq(i + 2, "e"))
            || (eq(i + 1, "l") && eq(i + 2, "l")) { return i + 3 }
        return nil
    }

    func run(_ k: Int, _ pred: (Int) -> Bool) -> Int {
        var j = k
        while pred(j) { j += 1 }
        return j
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the whole run if it ends the text; otherwise the
    /// run minus its last scalar (left for ` ?X` to take), or the lone scalar if the run is one.
    func whitespace(_ i: Int) -> Int {
        let e = run(i, isWS)
        if e == s.count || e - i == 1 { return e }
        return e - 1
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    func nextGPT2(_ i: Int) -> Int {
        if let e = contraction(i, caseInsensitive: false) { return e }
        let sp = s[i] == " " ? 1 : 0
        if isL(i + sp) { return run(i + sp, isL) }
        if isN(i + sp) { return run(i + sp, isN) }
        if isOther(i + sp) { return run(i + sp, isOther) }
        return whitespace(i)
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}
    ///  | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    func nextQwen(_ i: Int, maxDigits: Int) -> Int {
        if let e = contraction(i, caseInsensitive: true) { return e }
        if isL(i) { return run(i, isL) }
        if !isCRLF(i) && !isN(i) && isL(i + 1) { return run(i + 1, isL) }
        if isN(i) {
            var j = i + 1
            while j - i < maxDigits && isN(j) { j += 1 }
            return j
        }
        let sp = s[i] == " " ? 1 : 0
        if isOther(i + sp) { return run(run(i + sp, isOther), isCRLF) }
        // `\s*[\r\n]+`: greedy \s* backs off to the last CR/LF of the run.
        let e = run(i, isWS)
        var p = e - 1
        while p >= i && !isCRLF(p) { p -= 1 }
        if p >= i { return p + 1 }
        return whitespace(i)
    }
}
