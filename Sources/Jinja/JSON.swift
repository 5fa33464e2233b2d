// JSON in and out, keeping key order. Output matches Python's
// `json.dumps(x, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`, which is what
// transformers' `tojson` filter calls; input is an order-preserving parser for contexts
// (Foundation's JSONSerialization drops key order, and tool schemas print in their order).

extension Interpreter {
    /// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
    func toJSON(_ value: Value, _ args: CallArguments) throws -> String {
        var options = JSONOptions()
        options.ensureASCII = args.value(0, "ensure_ascii")?.isTruthy ?? false
        if let indent = args.value(1, "indent"), !indent.isNone {
            switch indent {
            case .string(let s): options.indent = s
            default:
                guard let n = indent.integer else { throw TemplateError(.type, "indent must be an int or a string") }
                try Limits.checkLength(n, "indent")
                options.indent = String(repeating: " ", count: max(0, n))
            }
        }
        if let separators = args.value(2, "separators"), !separators.isNone {
            guard let pair = separators.sequence, pair.count == 2,
                  case .string(let item) = pair[0], case .string(let key) = pair[1]
            else { throw TemplateError(.type, "separators must be a pair of strings") }
            options.itemSeparator = item
            options.keySeparator = key
        } else if options.indent != nil {
            options.itemSeparator = ","
        }
        options.sortKeys = args.value(3, "sort_keys")?.isTruthy ?? false
        return try value.jsonString(options)
    }
}

public struct JSONOptions: Sendable {
    public var ensureASCII = false
    /// nil prints on one line; otherwise each level is indented by this string.
    public var indent: String?
    public var itemSeparator = ", "
    public var keySeparator = ": "
    public var sortKeys = false
    public init() {}
}

extension Value {
    /// Python `json.dumps` with the given options.
    public func jsonString(_ options: JSONOptions = JSONOptions()) throws -> String {
        var out = ""
        try writeJSON(into: &out, options, level: 0)
        return out
    }

    private func writeJSON(into out: inout String, _ options: JSONOptions, level: Int) throws {
        guard level < Limits.valueDepth else { throw TemplateError(.type, "RecursionError: value nested too deeply for JSON") }
        func newline(_ level: Int) {
            guard let indent = options.indent else { return }
            out += "\n" + String(repeating: indent, count: level)
        }
        switch self {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else { out += pythonFloatRepr(d) }
        case .string(let s): out += jsonQuote(s, ensureASCII: options.ensureASCII)
        case .array(let items), .tuple(let items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += options.itemSeparator }
                newline(level + 1)
                try item.writeJSON(into: &out, options, level: level + 1)
            }
            newline(level)
            out += "]"
        case .object(let o):
            guard !o.isEmpty else { out += "{}"; return }
            out += "{"
            var pairs = o.pairs
            if options.sortKeys { pairs.sort { pythonOrder(.string($0.key), .string($1.key))! < 0 } }
            for (i, pair) in pairs.enumerated() {
                if i > 0 { out += options.itemSeparator }
                newline(level + 1)
                out += jsonQuote(pair.key, ensureASCII: options.ensureASCII) + options.keySeparator
                try pair.value.writeJSON(into: &out, options, level: level + 1)
            }
            newline(level)
            out += "}"
        case .undefined, .namespace, .callable:
            throw TemplateError(.type, "Object of type \(typeName) is not JSON serializable")
        }
    }
}

/// A JSON string literal as Python's json module writes it.
func jsonQuote(_ s: String, ensureASCII: Bool) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if c.value < 0x20 || (ensureASCII && c.value > 0x7E) {
                if c.value > 0xFFFF {
                    let v = c.value - 0x10000
                    out += "\\u" + hex(0xD800 + (v >> 10), width: 4) + "\\u" + hex(0xDC00 + (v & 0x3FF), width: 4)
                } else {
                    out += "\\u" + hex(c.value, width: 4)
                }
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    return out + "\""
}

// MARK: - Parsing

public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension Value {
    /// Parse JSON, keeping object key order. Integers without fraction or exponent become `.int`.
    public init(json text: String) throws {
        var parser = JSONParser(bytes: Array(text.utf8))
        self = try parser.parseDocument()
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var i = 0
    var depth = 0

    func fail(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: i) }

    mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    mutating func parseDocument() throws -> Value {
        let v = try parseValue()
        skipSpace()
        guard i == bytes.count else { throw fail("trailing characters") }
        return v
    }

    mutating func literal(_ word: String, _ value: Value) throws -> Value {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { throw fail("unexpected literal") }
        i += w.count
        return value
    }

    mutating func parseValue() throws -> Value {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Limits.valueDepth else { throw fail("nested too deeply") }
        skipSpace()
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var object = OrderedObject()
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(object) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try parseString()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                object[key] = try parseValue()
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(object) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [Value] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                items.append(try parseValue())
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .none)
        case UInt8(ascii: "N"): return try literal("NaN", .double(.nan))
        case UInt8(ascii: "I"): return try literal("Infinity", .double(.infinity))
        default: return try parseNumber()
        }
    }

    mutating func parseNumber() throws -> Value {
        let start = i
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "I") { return try literal("Infinity", .double(-.infinity)) }
        }
        var isFloat = false
        while i < bytes.count {
            let b = bytes[i]
            if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") { i += 1; continue }
            if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") {
                isFloat = true
                i += 1
                continue
            }
            break
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if !isFloat, let n = Int(text) { return .int(n) }
        guard let d = Double(text) else { throw fail("bad number '\(text)'") }
        return .double(d)
    }

    mutating func parseHex4() throws -> UInt32 {
        guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) else {
            throw fail("bad \\u escape")
        }
        i += 4
        return v
    }

    mutating func parseString() throws -> String {
        i += 1
        var buffer: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let b = bytes[i]
            i += 1
            if b == UInt8(ascii: "\"") { break }
            guard b == UInt8(ascii: "\\") else { buffer.append(b); continue }
            guard i < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code), i + 1 < bytes.count,
                   bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                    i += 2
                    let low = try parseHex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                buffer.append(contentsOf: Array(String(scalar).utf8))
            default: buffer.append(e)
            }
        }
        return String(decoding: buffer, as: UTF8.self)
    }
}
