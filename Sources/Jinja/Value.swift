// A template value: what Python objects are to jinja2. Strings are indexed, sliced and counted by
// Unicode scalar, as Python's `str` is by code point (not by Swift's grapheme clusters).

public indirect enum Value: Sendable {
    /// jinja2's default `Undefined`: prints as "", is falsy, iterates as empty; attribute access,
    /// subscripts, calls and arithmetic on it raise. `hint` is the message that error carries.
    case undefined(hint: String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// A Python list.
    case array([Value])
    /// A Python tuple: like `array`, but prints with parentheses.
    case tuple([Value])
    /// A Python dict: keys keep insertion order, as `tojson` output depends on it.
    case object(OrderedObject)
    /// A `namespace(...)` object; its attributes live in the render's namespace table.
    case namespace(NamespaceID)
    case callable(Callable)

    public static let undefined = Value.undefined(hint: "value is undefined")
}

/// Index of a namespace in one render's table (namespaces are mutable and shared by reference).
public struct NamespaceID: Sendable, Hashable {
    let index: Int
}

/// Things a template can call.
public enum Callable: Sendable {
    case macro(Macro)
    /// A global function by name: `range`, `namespace`, `raise_exception`, `strftime_now`, `dict`.
    case builtin(String)
    /// A method bound to its receiver: `message.content.strip`, `dict.items`.
    case method(Value, String)
    /// `loop.cycle` bound to the iteration it was read in.
    case loopCycle(index0: Int)
}

/// A `{% macro %}` (or the body of a `{% call %}` block, as `caller`).
public struct Macro: Sendable {
    let name: String
    let parameters: [(name: String, defaultValue: Expression?)]
    let body: [Statement]
    /// The `caller` the macro sees, when it is called from a `{% call %}` block.
    var caller: [Macro]
    /// The frame it was defined in (an index into the render's closure table).
    var closure: Int? = nil
}

/// A string-keyed dictionary that keeps insertion order, as Python's `dict` does.
public struct OrderedObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    public init() {}

    public init(_ pairs: [(String, Value)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var pairs: [(key: String, value: Value)] { keys.map { ($0, storage[$0]!) } }
    public var values: [Value] { keys.map { storage[$0]! } }

    public static func == (lhs: OrderedObject, rhs: OrderedObject) -> Bool {
        // Python dict equality ignores order.
        guard lhs.count == rhs.count else { return false }
        for (key, value) in lhs.storage {
            guard let other = rhs.storage[key], value.pythonEquals(other) else { return false }
        }
        return true
    }
}

extension Value: Equatable {
    public static func == (lhs: Value, rhs: Value) -> Bool { lhs.pythonEquals(rhs) }
}

// MARK: - Literals, so callers can build contexts naturally.

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral,
    ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: Value...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) { self = .object(OrderedObject(elements)) }
    public init(nilLiteral: ()) { self = .none }
}

// MARK: - Python semantics shared by the interpreter, filters and tests.

extension Value {
    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }
    var isNone: Bool { if case .none = self { return true } else { return false } }

    /// Python truthiness (`bool(x)`); Undefined is falsy.
    public var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a), .tuple(let a): return !a.isEmpty
        case .object(let o): return !o.isEmpty
        case .namespace, .callable: return true
        }
    }

    /// The elements of a list or tuple.
    var sequence: [Value]? {
        switch self {
        case .array(let a), .tuple(let a): return a
        default: return nil
        }
    }

    /// A number as Double (bool counts, as in Python).
    var numeric: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// An integer (bool counts, as in Python), not a float.
    var integer: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python's name for the type, as error messages print it.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .tuple: return "tuple"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .callable(let c):
            if case .macro = c { return "Macro" }
            return "function"
        }
    }

    /// Python `==`.
    func pythonEquals(_ other: Value) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.array(let a), .array(let b)), (.tuple(let a), .tuple(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.pythonEquals($1) }
        case (.object(let a), .object(let b)): return a == b
        case (.namespace(let a), .namespace(let b)): return a == b
        default:
            if let x = numeric, let y = other.numeric { return x == y }
            return false
        }
    }
}

// MARK: - Python str() and repr().

extension Value {
    /// Python `str(x)`, which is what `{{ x }}` prints; Undefined prints as "".
    public var pythonString: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pythonRepr
        }
    }

    /// Python `repr(x)`: how values print inside lists and dicts.
    var pythonRepr: String { repr(depth: 0) }

    /// Past `Limits.valueDepth` levels Python raises RecursionError; this prints "..." instead of
    /// overflowing the stack.
    private func repr(depth: Int) -> String {
        guard depth < Limits.valueDepth else { return "..." }
        let pythonRepr = { (v: Value) in v.repr(depth: depth + 1) }
        switch self {
        case .undefined: return "Undefined"
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloatRepr(d)
        case .string(let s): return pythonStringRepr(s)
        case .array(let a): return "[" + a.map(pythonRepr).joined(separator: ", ") + "]"
        case .tuple(let a):
            if a.count == 1 { return "(" + pythonRepr(a[0]) + ",)" }
            return "(" + a.map(pythonRepr).joined(separator: ", ") + ")"
        case .object(let o):
            return "{" + o.pairs.map { pythonStringRepr($0.key) + ": " + pythonRepr($0.value) }
                .joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .callable(let c):
            switch c {
            case .macro(let m): return "<Macro '\(m.name)'>"
            case .builtin(let name): return "<function \(name)>"
            case .method(_, let name): return "<built-in method \(name)>"
            case .loopCycle: return "<built-in method cycle>"
            }
        }
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in exponent form when the decimal
/// exponent is below -4 or at least 16.
func pythonFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description also prints the shortest round-trip digits; take them apart.
    var text = "\(abs(d))"
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exponent = Int(text[text.index(after: e)...])!
        text = String(text[..<e])
    }
    var intPart = text
    var fracPart = ""
    if let dot = text.firstIndex(of: ".") {
        intPart = String(text[..<dot])
        fracPart = String(text[text.index(after: dot)...])
    }
    var digits = intPart + fracPart
    var pointPosition = intPart.count + exponent  // digits before the decimal point
    while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); pointPosition -= 1 }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let decimalExponent = pointPosition - 1
    let sign = d < 0 ? "-" : ""
    if decimalExponent < -4 || decimalExponent >= 16 {
        var mantissa = String(digits.first!)
        if digits.count > 1 { mantissa += "." + digits.dropFirst() }
        let expSign = decimalExponent < 0 ? "-" : "+"
        let expDigits = String(abs(decimalExponent))
        return sign + mantissa + "e" + expSign + (expDigits.count < 2 ? "0" + expDigits : expDigits)
    }
    if pointPosition <= 0 {
        return sign + "0." + String(repeating: "0", count: -pointPosition) + digits
    }
    if pointPosition >= digits.count {
        return sign + digits + String(repeating: "0", count: pointPosition - digits.count) + ".0"
    }
    let split = digits.index(digits.startIndex, offsetBy: pointPosition)
    return sign + digits[..<split] + "." + digits[split...]
}

/// Python's `repr(str)`.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
    var out = String(quote)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(scalar) == quote {
                out += "\\" + String(quote)
            } else if isPythonPrintable(scalar) {
                out.unicodeScalars.append(scalar)
            } else if scalar.value < 0x100 {
                out += "\\x" + hex(scalar.value, width: 2)
            } else if scalar.value < 0x10000 {
                out += "\\u" + hex(scalar.value, width: 4)
            } else {
                out += "\\U" + hex(scalar.value, width: 8)
            }
        }
    }
    out.append(quote)
    return out
}

func hex(_ value: UInt32, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Python's `str.isprintable` for one code point.
func isPythonPrintable(_ scalar: Unicode.Scalar) -> Bool {
    if scalar == " " { return true }
    switch scalar.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned,
         .lineSeparator, .paragraphSeparator, .spaceSeparator:
        return false
    default:
        return true
    }
}

/// Python's `str.isspace` for one code point (what `str.strip()` and regex `\s` use).
func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0: return true
    default: return scalar.value > 0x7F && scalar.properties.isWhitespace
    }
}
