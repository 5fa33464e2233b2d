/// A `decoder` of tokenizer.json: tokenizers' `decode_chain`, over tokens as scalars.
protocol Decoder: Sendable {
    func decodeChain(_ tokens: [Scalars]) -> [Scalars]
}

enum DecoderType: String {
    case sequence = "Sequence", byteLevel = "ByteLevel", byteFallback = "ByteFallback", fuse = "Fuse"
    case strip = "Strip", replace = "Replace", metaspace = "Metaspace", bpe = "BPEDecoder"
    case wordPiece = "WordPiece"
}

func makeDecoder(_ r: JSONReader) throws(TokenizerError) -> any Decoder {
    switch try r.type(DecoderType.self) {
    case .sequence:
        var items: [any Decoder] = []
        for d in try r.required("decoders").array() { items.append(try makeDecoder(d)) }
        return SequenceDecoder(items: items)
    case .byteLevel: return ByteLevelDecoder()
    case .byteFallback: return ByteFallbackDecoder()
    case .fuse: return FuseDecoder()
    case .strip:
        let content = Array(try r.string("content", default: " ").unicodeScalars)
        guard content.count == 1 else { throw .invalidValue(path: r.child("content"), problem: "must be one character") }
        return StripDecoder(content: content[0], start: try r.int("start", default: 0), stop: try r.int("stop", default: 0))
    case .replace:
        return ReplaceDecoder(pattern: try SplitPattern.parse(try r.required("pattern")),
                              content: Array(try r.required("content").string().unicodeScalars))
    case .metaspace:
        let m = try MetaspacePreTokenizer(r)
        return MetaspaceDecoder(replacement: m.replacement, prependFirst: m.scheme != .never)
    case .bpe:
        return BPESuffixDecoder(suffix: Array(try r.string("suffix", default: "</w>").unicodeScalars))
    case .wordPiece:
        return WordPieceDecoder(prefix: Array(try r.string("prefix", default: "##").unicodeScalars),
                                cleanup: try r.bool("cleanup", default: true))
    }
}

struct SequenceDecoder: Decoder {
    let items: [any Decoder]
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] { items.reduce(tokens) { $1.decodeChain($0) } }
}

/// Lossy UTF-8 decoding (one U+FFFD per maximal invalid subsequence, as Rust's
/// `String::from_utf8_lossy`).
func lossyScalars(_ bytes: [UInt8]) -> Scalars { Array(String(decoding: bytes, as: UTF8.self).unicodeScalars) }

/// Maps the byte-level alphabet back to bytes and decodes them as UTF-8 (lossy), all tokens
/// together. A token with a character outside the alphabet contributes its own UTF-8 bytes.
struct ByteLevelDecoder: Decoder {
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] { [lossyScalars(bytes(tokens))] }

    func bytes(_ tokens: [Scalars]) -> [UInt8] {
        var out: [UInt8] = []
        for t in tokens { appendBytes(of: t, to: &out) }
        return out
    }

    func appendBytes(of t: Scalars, to out: inout [UInt8]) {
        let mark = out.count
        for c in t {
            guard let b = ByteLevelAlphabet.byte(for: c) else {
                out.removeSubrange(mark...)
                out.append(contentsOf: t.string.utf8)
                return
            }
            out.append(b)
        }
    }
}

/// `<0xXX>` tokens become bytes; a run of them is decoded as UTF-8, or, if invalid, becomes one
/// U+FFFD per byte.
struct ByteFallbackDecoder: Decoder {
    static func byteValue(_ t: Scalars) -> UInt8? {
        guard t.count == 6, t[0] == "<", t[1] == "0", t[2] == "x", t[5] == ">" else { return nil }
        return UInt8(String(String.UnicodeScalarView(t[3...4])), radix: 16)
    }

    func decodeChain(_ tokens: [Scalars]) -> [Scalars] {
        var out: [Scalars] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            let s = String(decoding: pending, as: UTF8.self)
            if s.utf8.elementsEqual(pending) {
                out.append(Array(s.unicodeScalars))
            } else {
                for _ in pending { out.append(["\u{FFFD}"]) }
            }
            pending.removeAll()
        }
        for t in tokens {
            if let b = Self.byteValue(t) { pending.append(b); continue }
            flush()
            out.append(t)
        }
        flush()
        return out
    }
}

struct FuseDecoder: Decoder {
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] { [tokens.flatMap { $0 }] }
}

/// Removes up to `start` leading and `stop` trailing `content` characters from each token.
struct StripDecoder: Decoder {
    let content: Unicode.Scalar
    let start: Int, stop: Int
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] {
        tokens.map { t in
            var lo = 0
            while lo < min(start, t.count) && t[lo] == content { lo += 1 }
            var hi = t.count
            var k = 0
            while k < stop && hi > lo && t[hi - 1] == content { hi -= 1; k += 1 }
            return Array(t[lo..<hi])
        }
    }
}

struct ReplaceDecoder: Decoder {
    let pattern: SplitPattern
    let content: Scalars
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] { tokens.map { replace($0, pattern, with: content) } }
}

/// "▁" → " "; with a prepend scheme, the first token loses its "▁"s instead.
struct MetaspaceDecoder: Decoder {
    let replacement: Unicode.Scalar
    let prependFirst: Bool
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] {
        tokens.enumerated().map { i, t in
            var out = Scalars()
            for c in t {
                if c == replacement {
                    if i == 0 && prependFirst { continue }
                    out.append(" ")
                } else {
                    out.append(c)
                }
            }
            return out
        }
    }
}

/// `BPEDecoder`: the end-of-word suffix becomes a space (none after the last token).
struct BPESuffixDecoder: Decoder {
    let suffix: Scalars
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] {
        tokens.enumerated().map { i, t in
            replace(t, .literal(suffix), with: i == tokens.count - 1 ? [] : [" "])
        }
    }
}

/// `WordPiece`: "##" continuation pieces join the previous token, others get a space.
struct WordPieceDecoder: Decoder {
    let prefix: Scalars
    let cleanup: Bool
    func decodeChain(_ tokens: [Scalars]) -> [Scalars] {
        tokens.enumerated().map { i, t in
            var out = t
            if i != 0 {
                if out.starts(with: prefix) { out.removeFirst(prefix.count) } else { out.insert(" ", at: 0) }
            }
            if cleanup {
                for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                   (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                                   (" 've", "'ve"), (" 're", "'re")] {
                    out = replace(out, .literal(Array(from.unicodeScalars)), with: Array(to.unicodeScalars))
                }
            }
            return out
        }
    }
}
