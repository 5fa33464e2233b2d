// Python operator semantics for template expressions: int/float promotion, str and list
// concatenation and repetition, floor division and modulo with the divisor's sign.


import Foundation
extension Interpreter {
    func unary(_ op: String, _ value: Value) throws -> Value {
        if case .undefined(let hint) = value { throw TemplateError(.undefined, hint) }
        switch (op, value) {
        case ("-", .double(let d)): return .double(-d)
        case ("+", .double(let d)): return .double(d)
        default:
            guard let i = value.integer else {
                throw TemplateError(.type, "bad operand type for unary \(op): '\(value.typeName)'")
            }
            if op == "+" { return .int(i) }
            let (r, overflow) = (0).subtractingReportingOverflow(i)
            guard !overflow else { throw TemplateError(.type, "integer overflow") }
            return .int(r)
        }
    }

    func binary(_ op: String, _ left: Value, _ right: Value) throws -> Value {
        if op == "~" { return .string(left.pythonString + right.pythonString) }
        if op == "%", case .string(let format) = left {
            // Python: a tuple gives the arguments; a list, dict or Undefined (all have __getitem__)
            // is one argument that may go unused; anything else is one argument that must be used.
            switch right {
            case .tuple(let items): return .string(try printfFormat(format, items))
            case .array, .object, .undefined: return .string(try printfFormat(format, [right], allowUnused: true))
            default: return .string(try printfFormat(format, [right]))
            }
        }
        if case .undefined(let hint) = left { throw TemplateError(.undefined, hint) }
        if case .undefined(let hint) = right { throw TemplateError(.undefined, hint) }
        let unsupported = TemplateError(.type,
            "unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")

        // Integers (bool counts) stay integers, except for true division.
        if let a = left.integer, let b = right.integer {
            func checked(_ r: (partialValue: Int, overflow: Bool)) throws -> Value {
                guard !r.overflow else { throw TemplateError(.type, "integer overflow") }
                return .int(r.partialValue)
            }
            switch op {
            case "+": return try checked(a.addingReportingOverflow(b))
            case "-": return try checked(a.subtractingReportingOverflow(b))
            case "*": return try checked(a.multipliedReportingOverflow(by: b))
            case "/":
                guard b != 0 else { throw TemplateError(.type, "division by zero") }
                return .double(Double(a) / Double(b))
            case "//":
                guard b != 0 else { throw TemplateError(.type, "integer division or modulo by zero") }
                let q = a / b
                return .int((a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q)
            case "%":
                guard b != 0 else { throw TemplateError(.type, "integer division or modulo by zero") }
                let r = a % b
                return .int(r != 0 && (r < 0) != (b < 0) ? r + b : r)
            case "**":
                if b < 0 {
                    guard a != 0 else { throw TemplateError(.type, "0.0 cannot be raised to a negative power") }
                    return .double(pow(Double(a), Double(b)))
                }
                var result = 1, base = a, exponent = b
                while exponent > 0 {
                    if exponent & 1 == 1 {
                        let (r, o) = result.multipliedReportingOverflow(by: base)
                        guard !o else { throw TemplateError(.type, "integer overflow") }
                        result = r
                    }
                    exponent >>= 1
                    if exponent > 0 {
                        let (r, o) = base.multipliedReportingOverflow(by: base)
                        guard !o else { throw TemplateError(.type, "integer overflow") }
                        base = r
                    }
                }
                return .int(result)
            default: throw unsupported
            }
        }
        if let a = left.numeric, let b = right.numeric {
            switch op {
            case "+": return .double(a + b)
            case "-": return .double(a - b)
            case "*": return .double(a * b)
            case "/":
                guard b != 0 else { throw TemplateError(.type, "float division by zero") }
                return .double(a / b)
            case "//":
                guard b != 0 else { throw TemplateError(.type, "float floor division by zero") }
                return .double((a / b).rounded(.down))
            case "%":
                guard b != 0 else { throw TemplateError(.type, "float modulo") }
                let r = fmod(a, b)
                if r == 0 { return .double(copysign(0, b)) }
                return .double((r < 0) != (b < 0) ? r + b : r)
            case "**":
                guard a != 0 || b >= 0 else { throw TemplateError(.type, "0.0 cannot be raised to a negative power") }
                return .double(pow(a, b))
            default: throw unsupported
            }
        }
        switch (op, left, right) {
        case ("+", .string(let a), .string(let b)): return .string(a + b)
        case ("+", .array(let a), .array(let b)): return .array(a + b)
        case ("+", .tuple(let a), .tuple(let b)): return .tuple(a + b)
        case ("*", .string(let s), _), ("*", _, .string(let s)):
            guard let n = (left.integer ?? right.integer) else { throw unsupported }
            let count = max(0, n)
            let (total, overflow) = s.unicodeScalars.count.multipliedReportingOverflow(by: count)
            try Limits.checkLength(overflow ? Int.max : total, "string")
            return .string(total == 0 ? "" : String(repeating: s, count: count))
        case ("*", .array(let a), _), ("*", _, .array(let a)):
            guard let n = (left.integer ?? right.integer) else { throw unsupported }
            let count = max(0, n)
            let (total, overflow) = a.count.multipliedReportingOverflow(by: count)
            try Limits.checkLength(overflow ? Int.max : total, "list")
            return .array(total == 0 ? [] : Array([[Value]](repeating: a, count: count).joined()))
        default:
            throw unsupported
        }
    }

    func compare(_ op: String, _ left: Value, _ right: Value) throws -> Bool {
        switch op {
        case "==": return left.pythonEquals(right)
        case "!=": return !left.pythonEquals(right)
        case "in": return try contains(right, left)
        case "notin": return try !contains(right, left)
        default: break
        }
        if case .undefined(let hint) = left { throw TemplateError(.undefined, hint) }
        if case .undefined(let hint) = right { throw TemplateError(.undefined, hint) }
        guard let order = pythonOrder(left, right) else {
            throw TemplateError(.type,
                "'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'")
        }
        switch op {
        case "<": return order < 0
        case "<=": return order <= 0
        case ">": return order > 0
        default: return order >= 0
        }
    }

    /// Python `needle in haystack`.
    func contains(_ haystack: Value, _ needle: Value) throws -> Bool {
        switch haystack {
        case .string(let s):
            guard case .string(let n) = needle else {
                throw TemplateError(.type, "'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return n.isEmpty || s.pySplit(n).count > 1
        case .array(let a), .tuple(let a):
            return a.contains { $0.pythonEquals(needle) }
        case .object(let o):
            switch needle {
            case .string(let k): return o[k] != nil
            case .array, .object: throw TemplateError(.type, "unhashable type: '\(needle.typeName)'")
            default: return false
            }
        case .namespace(let id):
            guard case .string(let k) = needle else { return false }
            return namespaces[id.index][k] != nil
        case .undefined:
            return false
        default:
            throw TemplateError(.type, "argument of type '\(haystack.typeName)' is not iterable")
        }
    }

    /// What `for x in value` visits: list items, dict keys, string characters; Undefined is empty.
    func iterate(_ value: Value) throws -> [Value] {
        switch value {
        case .array(let a), .tuple(let a): return a
        case .object(let o): return o.keys.map(Value.string)
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw TemplateError(.type, "'\(value.typeName)' object is not iterable")
        }
    }
}

/// Python ordering: -1, 0, 1, or nil where Python raises TypeError.
func pythonOrder(_ left: Value, _ right: Value) -> Int? {
    switch (left, right) {
    case (.string(let a), .string(let b)):
        let (x, y) = (Array(a.unicodeScalars), Array(b.unicodeScalars))
        for (p, q) in zip(x, y) where p != q { return p.value < q.value ? -1 : 1 }
        return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
    case (.array(let a), .array(let b)), (.tuple(let a), .tuple(let b)):
        for (p, q) in zip(a, b) where !p.pythonEquals(q) { return pythonOrder(p, q) }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    default:
        if let a = left.integer, let b = right.integer { return a == b ? 0 : (a < b ? -1 : 1) }
        guard let a = left.numeric, let b = right.numeric, !a.isNaN, !b.isNaN else { return nil }
        return a == b ? 0 : (a < b ? -1 : 1)
    }
}
