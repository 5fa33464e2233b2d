/// Character classes as the Hugging Face `tokenizers` regexes see them, over Unicode scalars.
///
/// Checked against `tokenizers` 0.23.3 (Oniguruma): `\s` is exactly the Unicode White_Space
/// property (U+0009–000D, U+0020, U+0085, U+00A0, U+1680, U+2000–200A, U+2028, U+2029, U+202F,
/// U+205F, U+3000), `\p{L}` the general categories L*, `\p{N}` the categories N*.
enum UnicodeClass {
    @inline(__always)
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return s.properties.isWhitespace
    }

    @inline(__always)
    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    @inline(__always)
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Rust's `char::is_numeric` (what the `Digits` pre-tokenizer splits on): categories N*.
    static func isNumeric(_ s: Unicode.Scalar) -> Bool { isNumber(s) }

    /// Rust `regex`'s Unicode `\w`: Alphabetic, marks, decimal digits, connector punctuation,
    /// Join_Control. Used by added tokens' `single_word`.
    static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

/// GPT-2's reversible byte ↔ printable-character map (`bytes_to_unicode` in OpenAI's encoder.py,
/// `BYTES_CHAR` in tokenizers' byte_level.rs): printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100 onwards in byte order.
enum ByteLevelAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, indexed by scalar value (< 0x144); -1 where no byte maps.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    @inline(__always)
    static func byte(for s: Unicode.Scalar) -> UInt8? {
        let v = Int(s.value)
        guard v < scalarToByte.count, scalarToByte[v] >= 0 else { return nil }
        return UInt8(scalarToByte[v])
    }
}
