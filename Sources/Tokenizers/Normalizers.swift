import Foundation

/// Text is carried through the pipeline as Unicode scalars, never compared as `String`
/// (whose equality is canonical equivalence).
typealias Scalars = [Unicode.Scalar]

extension Array where Element == Unicode.Scalar {
    var string: String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: self)
        return String(view)
    }
}

/// A `normalizer` of tokenizer.json.
protocol Normalizer: Sendable {
    func normalize(_ text: Scalars) -> Scalars
}

/// The JSON `"type"` strings of the normalizers this implementation knows.
enum NormalizerType: String {
    case sequence = "Sequence", nfc = "NFC", nfd = "NFD", nfkc = "NFKC", nfkd = "NFKD"
    case lowercase = "Lowercase", prepend = "Prepend", replace = "Replace", strip = "Strip"
}

func makeNormalizer(_ r: JSONReader) throws(TokenizerError) -> any Normalizer {
    switch try r.type(NormalizerType.self) {
    case .sequence:
        var items: [any Normalizer] = []
        for n in try r.required("normalizers").array() { items.append(try makeNormalizer(n)) }
        return SequenceNormalizer(normalizers: items)
    case .nfc: return UnicodeNormalizer(form: .nfc)
    case .nfd: return UnicodeNormalizer(form: .nfd)
    case .nfkc: return UnicodeNormalizer(form: .nfkc)
    case .nfkd: return UnicodeNormalizer(form: .nfkd)
    case .lowercase: return LowercaseNormalizer()
    case .prepend: return PrependNormalizer(prepend: Array(try r.required("prepend").string().unicodeScalars))
    case .replace:
        return ReplaceNormalizer(pattern: try SplitPattern.parse(try r.required("pattern")),
                                 content: Array(try r.required("content").string().unicodeScalars))
    case .strip:
        return StripNormalizer(left: try r.bool("strip_left", default: true),
                               right: try r.bool("strip_right", default: true))
    }
}

struct SequenceNormalizer: Normalizer {
    let normalizers: [any Normalizer]
    func normalize(_ text: Scalars) -> Scalars {
        normalizers.reduce(text) { $1.normalize($0) }
    }
}

/// NFC/NFD/NFKC/NFKD through Foundation. Unicode versions may differ from the Rust
/// `unicode-normalization` crate's for characters assigned recently.
struct UnicodeNormalizer: Normalizer {
    enum Form { case nfc, nfd, nfkc, nfkd }
    let form: Form
    func normalize(_ text: Scalars) -> Scalars {
        // ASCII is invariant under every normalization form.
        if text.allSatisfy({ $0.isASCII }) { return text }
        let s = text.string
        let n: String
        switch form {
        case .nfc: n = s.precomposedStringWithCanonicalMapping
        case .nfd: n = s.decomposedStringWithCanonicalMapping
        case .nfkc: n = s.precomposedStringWithCompatibilityMapping
        case .nfkd: n = s.decomposedStringWithCompatibilityMapping
        }
        return Array(n.unicodeScalars)
    }
}

/// Scalar by scalar, as tokenizers' `NormalizedString::lowercase` (`char::to_lowercase`, so no
/// final-sigma rule: "ΟΔΟΣ" → "οδοσ", checked against tokenizers 0.23.3).
struct LowercaseNormalizer: Normalizer {
    func normalize(_ text: Scalars) -> Scalars {
        var out = Scalars()
        out.reserveCapacity(text.count)
        for c in text {
            if c.isASCII {
                out.append(c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(c.value + 32)! : c)
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }
}

/// Prepends a string to non-empty text (Llama-2's "▁").
struct PrependNormalizer: Normalizer {
    let prepend: Scalars
    func normalize(_ text: Scalars) -> Scalars { text.isEmpty ? text : prepend + text }
}

struct ReplaceNormalizer: Normalizer {
    let pattern: SplitPattern
    let content: Scalars
    func normalize(_ text: Scalars) -> Scalars { replace(text, pattern, with: content) }
}

func replace(_ text: Scalars, _ pattern: SplitPattern, with content: Scalars) -> Scalars {
    let found = pattern.matches(in: text)
    if found.isEmpty { return text }
    var out = Scalars()
    out.reserveCapacity(text.count)
    var last = 0
    for m in found {
        out.append(contentsOf: text[last..<m.lowerBound])
        out.append(contentsOf: content)
        last = m.upperBound
    }
    out.append(contentsOf: text[last...])
    return out
}

struct StripNormalizer: Normalizer {
    let left: Bool, right: Bool
    func normalize(_ text: Scalars) -> Scalars {
        var lo = 0, hi = text.count
        if left { while lo < hi && UnicodeClass.isWhitespace(text[lo]) { lo += 1 } }
        if right { while hi > lo && UnicodeClass.isWhitespace(text[hi - 1]) { hi -= 1 } }
        return Array(text[lo..<hi])
    }
}
