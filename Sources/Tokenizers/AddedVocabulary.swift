/// One entry of tokenizer.json's `added_tokens`.
public struct AddedToken: Sendable, Equatable {
    public let id: Int
    public let content: String
    public let singleWord: Bool
    public let lstrip: Bool
    public let rstrip: Bool
    public let normalized: Bool
    public let special: Bool

    public static func == (a: AddedToken, b: AddedToken) -> Bool {
        a.id == b.id && a.content.unicodeScalars.elementsEqual(b.content.unicodeScalars)
            && a.singleWord == b.singleWord && a.lstrip == b.lstrip && a.rstrip == b.rstrip
            && a.normalized == b.normalized && a.special == b.special
    }

    init(_ r: JSONReader) throws(TokenizerError) {
        id = try r.required("id").int()
        content = try r.required("content").string()
        singleWord = try r.bool("single_word", default: false)
        lstrip = try r.bool("lstrip", default: false)
        rstrip = try r.bool("rstrip", default: false)
        special = try r.bool("special", default: false)
        normalized = try r.bool("normalized", default: !special)
    }
}

/// tokenizers' `AddedVocabulary`: added tokens are cut out of the text before anything else
/// sees it — first those with `normalized: false` from the raw text, then, after normalizing
/// what is left, those with `normalized: true` (matched in their normalized form).
struct AddedVocabulary: Sendable {
    /// Leftmost-longest matcher (tokenizers uses Aho-Corasick with `LeftmostLongest`).
    struct Matcher: Sendable {
        /// first scalar → (pattern, token index), longest pattern first
        var byFirst: [UInt32: [(pattern: Scalars, token: Int)]] = [:]
        /// whether some pattern starts with each ASCII scalar (skips the hash lookup)
        var asciiFirst = [Bool](repeating: false, count: 128)
        var isEmpty: Bool { byFirst.isEmpty }

        mutating func add(_ pattern: Scalars, token: Int) {
            guard let f = pattern.first else { return }
            if f.isASCII { asciiFirst[Int(f.value)] = true }
            var list = byFirst[f.value] ?? []
            // Identical patterns: the first registered wins, as in Aho-Corasick.
            if list.contains(where: { $0.pattern == pattern }) { return }
            list.append((pattern, token))
            list.sort { $0.pattern.count > $1.pattern.count }
            byFirst[f.value] = list
        }

        /// The longest pattern starting at `i`.
        func longest(in s: Scalars, at i: Int) -> (length: Int, token: Int)? {
            let v = s[i].value
            if v < 128 && !asciiFirst[Int(v)] { return nil }
            guard let list = byFirst[v] else { return nil }
            for (p, t) in list where i + p.count <= s.count && s[i..<i + p.count].elementsEqual(p) {
                return (p.count, t)
            }
            return nil
        }
    }

    let tokens: [AddedToken]
    let byID: [Int: Int]  // id → index in tokens
    /// What `decode` hands the decoder for each token: tokenizers (0.21+) uses the normalized
    /// form of a `normalized` token, so that the decoder inverts the normalization.
    let decodeForms: [Scalars]
    /// Whether `decode(skipSpecialTokens: true)` drops each token: tokenizers looks the decode
    /// form up among the special tokens' contents.
    let skippable: [Bool]
    private var raw = Matcher()
    private var normalizedMatcher = Matcher()

    init(tokens: [AddedToken], normalizer: (any Normalizer)?) {
        self.tokens = tokens
        var byID: [Int: Int] = [:]
        for (k, t) in tokens.enumerated() { byID[t.id] = k }
        self.byID = byID
        let forms = tokens.map { t -> Scalars in
            let c = Array(t.content.unicodeScalars)
            guard t.normalized, let n = normalizer else { return c }
            return n.normalize(c)
        }
        decodeForms = forms
        let specialContents = Set(tokens.filter(\.special).map { Array($0.content.utf8) })
        skippable = forms.map { specialContents.contains(Array($0.string.utf8)) }
        // tokenizers registers special tokens first, then the others, each in file order.
        let order = tokens.indices.filter { tokens[$0].special } + tokens.indices.filter { !tokens[$0].special }
        for k in order where !tokens[k].content.isEmpty {
            let t = tokens[k]
            if t.normalized {
                var pattern = Array(t.content.unicodeScalars)
                if let n = normalizer { pattern = n.normalize(pattern) }
                normalizedMatcher.add(pattern, token: k)
            } else {
                raw.add(Array(t.content.unicodeScalars), token: k)
            }
        }
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// Splits `text` into added tokens and normalized text spans (empty spans dropped).
    func extractAndNormalize(_ text: Scalars, normalizer: (any Normalizer)?) -> [Piece] {
        var out: [Piece] = []
        for piece in split(Piece(text: text, addedID: nil, atOrigin: true), raw) {
            if piece.addedID != nil { out.append(piece); continue }
            var p = piece
            if let n = normalizer { p.text = n.normalize(p.text) }
            out.append(contentsOf: split(p, normalizedMatcher))
        }
        return out
    }

    /// `AddedVocabulary::find_matches` + `split_with_indices`.
    private func split(_ piece: Piece, _ matcher: Matcher) -> [Piece] {
        let s = piece.text
        if s.isEmpty { return [] }
        if matcher.isEmpty { return [piece] }
        var out: [Piece] = []
        var startOffset = 0
        var i = 0
        func emit(_ r: Range<Int>, _ id: Int?) {
            guard !r.isEmpty else { return }
            out.append(Piece(text: Array(s[r]), addedID: id, atOrigin: piece.atOrigin && r.lowerBound == 0))
        }
        while i < s.count {
            guard let m = matcher.longest(in: s, at: i) else { i += 1; continue }
            var start = i
            var stop = i + m.length
            i = stop
            let t = tokens[m.token]
            if t.singleWord {
                let startSpace = start == 0 || !UnicodeClass.isWordCharacter(s[start - 1])
                let stopSpace = stop == s.count || !UnicodeClass.isWordCharacter(s[stop])
                if !startSpace || !stopSpace { continue }
            }
            if t.lstrip {
                var k = start
                while k > 0 && UnicodeClass.isWhitespace(s[k - 1]) { k -= 1 }
                start = max(k, startOffset)
            }
            if t.rstrip {
                // The search resumes at the match's own end, as Aho-Corasick's find_iter does.
                while stop < s.count && UnicodeClass.isWhitespace(s[stop]) { stop += 1 }
            }
            if startOffset < start { emit(startOffset..<start, nil) }
            emit(start..<stop, t.id)
            startOffset = stop
        }
        if startOffset < s.count { emit(startOffset..<s.count, nil) }
        return out
    }
}
