// jinja2's builtin tests (jinja2/tests.py): `x is defined`, `x is string`, `n is divisibleby 3`...

enum Tests {
    static let names: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even",
        "false", "filter", "float", "ge", ">=", "gt", "greaterthan", ">", "in", "integer", "iterable",
        "le", "<=", "lower", "lt", "lessthan", "<", "mapping", "ne", "!=", "none", "number", "odd",
        "sameas", "sequence", "string", "test", "true", "undefined", "upper",
    ]
}

extension Interpreter {
    func applyTest(_ name: String, to value: Value, _ args: CallArguments) throws -> Bool {
        func argument() throws -> Value {
            guard let a = args.positional.first ?? args.keyword.first?.value else {
                throw TemplateError(.type, "test '\(name)' needs an argument")
            }
            return a
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value.isNone
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "number": return value.numeric != nil
        case "string": if case .string = value { return true } else { return false }
        case "mapping": if case .object = value { return true } else { return false }
        case "callable":
            switch value {
            case .callable, .undefined: return true  // Undefined defines __call__ (to raise)
            default: return false
            }
        case "escaped": return false
        case "iterable":
            switch value {
            case .string, .array, .tuple, .object, .undefined: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .string, .array, .tuple, .object, .undefined: return true
            default: return false
            }
        case "odd", "even":
            // jinja2: value % 2 == 1 (odd) and value % 2 == 0 (even), so 2.5 is neither.
            let r = try binary("%", value, .int(2))
            return r.pythonEquals(.int(name == "odd" ? 1 : 0))
        case "divisibleby":
            if case .undefined(let hint) = value { throw TemplateError(.undefined, hint) }
            let r = try binary("%", value, try argument())
            return r.numeric == 0
        case "lower":
            guard case .string(let s) = value else { return false }
            return s.contains { $0.isCased } && !s.contains { $0.isUppercase }
        case "upper":
            guard case .string(let s) = value else { return false }
            return s.contains { $0.isCased } && !s.contains { $0.isLowercase }
        case "eq", "equalto", "==": return try compare("==", value, try argument())
        case "ne", "!=": return try compare("!=", value, try argument())
        case "lt", "lessthan", "<": return try compare("<", value, try argument())
        case "le", "<=": return try compare("<=", value, try argument())
        case "gt", "greaterthan", ">": return try compare(">", value, try argument())
        case "ge", ">=": return try compare(">=", value, try argument())
        case "in": return try contains(try argument(), value)
        case "sameas":
            let other = try argument()
            switch (value, other) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.int(let a), .int(let b)): return a == b && (-5...256).contains(a)
            default: return false
            }
        case "filter":
            guard case .string(let n) = value else { return false }
            return Filters.names.contains(n)
        case "test":
            guard case .string(let n) = value else { return false }
            return Tests.names.contains(n)
        default:
            throw TemplateError(.type, "No test named '\(name)' found.")
        }
    }
}
