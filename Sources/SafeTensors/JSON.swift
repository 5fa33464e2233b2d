// A small strict JSON parser (RFC 8259) for safetensors headers and index files.
//
// Why not JSONSerialization: it turns integers into Double (2^53 + 1 silently becomes 2^53),
// lets the last of two duplicate keys win, and has no nesting limit. This parser keeps integer
// literals exact, rejects duplicate keys at any depth, caps nesting so hostile input cannot
// exhaust the stack, and validates UTF-8 up front.

/// A JSON number as written. Integer literals (no fraction, no exponent) are kept exactly.
struct JSONNumber: Equatable {
    var text: String
    /// Whether the literal has no fraction and no exponent.
    var isInteger: Bool
    var isNegative: Bool
    /// |value| for integer literals that fit in a UInt64; nil otherwise.
    var magnitude: UInt64?
}

/// Objects keep their members in file order; duplicate keys never get this far.
enum JSONValue {
    case object([JSONMember])
    case array([JSONValue])
    case string(String)
    case number(JSONNumber)
    case bool(Bool)
    case null

    /// What a message calls this value: "an array", "the string \"x\"", …
    var kindDescription: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case let .string(text): "the string \"\(text.count > 40 ? String(text.prefix(40)) + "…" : text)\""
        case let .number(number): "the number \(number.text)"
        case let .bool(flag): "\(flag)"
        case .null: "null"
        }
    }
}

struct JSONMember {
    var key: String
    var value: JSONValue
}

struct JSONError: Error {
    enum Kind: Equatable {
        case notUTF8
        case syntax(String)
        case duplicateKey(String)
    }
    var kind: Kind
    /// Byte offset into the parsed buffer.
    var offset: Int
}

/// Byte offset of the first invalid UTF-8 sequence, or nil when `bytes` is valid UTF-8.
/// Strict: rejects overlong forms, surrogates and code points above U+10FFFF.
func firstInvalidUTF8(_ bytes: UnsafeRawBufferPointer) -> Int? {
    let count = bytes.count
    var i = 0
    while i < count {
        let lead = bytes[i]
        if lead < 0x80 { i += 1; continue }
        let trailing: Int
        var scalar: UInt32
        let minimum: UInt32
        switch lead {
        case 0xC0...0xDF: trailing = 1; scalar = UInt32(lead & 0x1F); minimum = 0x80
        case 0xE0...0xEF: trailing = 2; scalar = UInt32(lead & 0x0F); minimum = 0x800
        case 0xF0...0xF7: trailing = 3; scalar = UInt32(lead & 0x07); minimum = 0x1_0000
        default: return i
        }
        guard count - i > trailing else { return i }
        for k in 1...trailing {
            let byte = bytes[i + k]
            guard byte & 0xC0 == 0x80 else { return i }
            scalar = scalar << 6 | UInt32(byte & 0x3F)
        }
        guard scalar >= minimum, scalar <= 0x10_FFFF, !(0xD800...0xDFFF).contains(scalar) else { return i }
        i += trailing + 1
    }
    return nil
}

struct JSONParser {
    /// Deeper nesting than any safetensors header or index needs; keeps recursion bounded.
    static let maxDepth = 32

    private let bytes: UnsafeRawBufferPointer
    private var position = 0

    /// Parses one JSON value surrounded by optional whitespace (safetensors pads headers with
    /// trailing spaces).
    static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> JSONValue {
        if let bad = firstInvalidUTF8(bytes) { throw JSONError(kind: .notUTF8, offset: bad) }
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    private func error(_ message: String) -> JSONError {
        JSONError(kind: .syntax(message), offset: position)
    }

    private var current: UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            position += 1
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth)") }
        guard let byte = current else { throw error("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        default: throw error("unexpected character '\(printable(byte))'")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw error("unexpected end of input") }
        for k in 0..<count where bytes[position + k] != literal.utf8Start[k] {
            throw error("invalid literal")
        }
        position += count
    }

    private mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
        position += 1  // {
        var members: [JSONMember] = []
        var seen = Set<String>()
        skipWhitespace()
        if current == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyOffset = position
            let key = try parseString()
            guard seen.insert(key).inserted else { throw JSONError(kind: .duplicateKey(key), offset: keyOffset) }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
            position += 1
            skipWhitespace()
            members.append(JSONMember(key: key, value: try parseValue(depth: depth + 1)))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return .object(members)
            default: throw error("expected ',' or '}' in an object")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
        position += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(elements)
            default: throw error("expected ',' or ']' in an array")
            }
        }
    }

    private mutating func parseString() throws(JSONError) -> String {
        position += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            guard let byte = current else { throw error("unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                // The buffer was validated as UTF-8 and escapes only append valid scalars.
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                position += 1
                guard let escape = current else { throw error("unterminated string") }
                position += 1
                switch escape {
                case UInt8(ascii: "\""): utf8.append(0x22)
                case UInt8(ascii: "\\"): utf8.append(0x5C)
                case UInt8(ascii: "/"): utf8.append(0x2F)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): utf8.append(contentsOf: try parseUnicodeEscape())
                default: position -= 1; throw error("invalid escape '\\\(printable(escape))'")
                }
            case 0x00..<0x20:
                throw error("control character in a string")
            default:
                utf8.append(byte)
                position += 1
            }
        }
    }

    /// After `\u`: four hex digits, or a surrogate pair written as two escapes.
    private mutating func parseUnicodeEscape() throws(JSONError) -> [UInt8] {
        var scalar = try parseHex4()
        if (0xD800...0xDBFF).contains(scalar) {
            guard bytes.count - position >= 2, bytes[position] == UInt8(ascii: "\\"),
                  bytes[position + 1] == UInt8(ascii: "u") else { throw error("lone surrogate in \\u escape") }
            position += 2
            let low = try parseHex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw error("lone surrogate in \\u escape") }
            scalar = 0x1_0000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(scalar) {
            throw error("lone surrogate in \\u escape")
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
        return Array(String(Character(unicode)).utf8)
    }

    private mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    private mutating func parseNumber() throws(JSONError) -> JSONNumber {
        let start = position
        let negative = current == UInt8(ascii: "-")
        if negative { position += 1 }
        var magnitude: UInt64? = 0
        guard let first = current, isDigit(first) else { throw error("expected a digit") }
        if first == UInt8(ascii: "0") {
            position += 1
            if let next = current, isDigit(next) { throw error("leading zero in a number") }
        } else {
            while let byte = current, isDigit(byte) {
                if let value = magnitude {
                    let (times10, o1) = value.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
                    magnitude = o1 || o2 ? nil : sum
                }
                position += 1
            }
        }
        var isInteger = true
        if current == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard let byte = current, isDigit(byte) else { throw error("expected a digit after '.'") }
            while let byte = current, isDigit(byte) { position += 1 }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard let byte = current, isDigit(byte) else { throw error("expected a digit in the exponent") }
            while let byte = current, isDigit(byte) { position += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        return JSONNumber(text: text, isInteger: isInteger, isNegative: negative,
                          magnitude: isInteger ? magnitude : nil)
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private func printable(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }
}

/// Writes `text` as a JSON string literal: quotes, backslashes and control characters escaped,
/// everything else as raw UTF-8 (what Python's `json.dumps(ensure_ascii=False)` writes).
func appendJSONString(_ text: String, to output: inout [UInt8]) {
    output.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""): output.append(contentsOf: [0x5C, 0x22])
        case UInt8(ascii: "\\"): output.append(contentsOf: [0x5C, 0x5C])
        case 0x0A: output.append(contentsOf: [0x5C, UInt8(ascii: "n")])
        case 0x0D: output.append(contentsOf: [0x5C, UInt8(ascii: "r")])
        case 0x09: output.append(contentsOf: [0x5C, UInt8(ascii: "t")])
        case 0x00..<0x20:
            let hex = String(byte, radix: 16)
            output.append(contentsOf: Array("\\u00\(hex.count == 1 ? "0" : "")\(hex)".utf8))
        default: output.append(byte)
        }
    }
    output.append(UInt8(ascii: "\""))
}
