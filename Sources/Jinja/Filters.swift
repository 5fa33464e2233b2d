// jinja2's builtin filters (jinja2/filters.py) that chat templates use, plus transformers'
// `tojson` override (json.dumps with ensure_ascii=False and optional indent).

import Foundation

enum Filters {
    static let names: Set<String> = [
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
        "first", "float", "forceescape", "format", "indent", "int", "items", "join", "last", "length",
        "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round",
        "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique",
        "upper", "wordcount",
    ]
}

extension Interpreter {
    func applyFilter(_ filter: FilterCall, to value: Value, in frame: Frame) throws -> Value {
        do {
            return try callFilter(filter.name, value, try evaluateArguments(filter.arguments, in: frame))
        } catch let error as TemplateError {
            throw error.at(line: filter.line, column: filter.column)
        }
    }

    /// jinja2's `make_attrgetter`: `"a.b.0"` looks up `a`, then `b`, then item 0.
    func lookupPath(_ item: Value, _ path: Value) throws -> Value {
        guard case .string(let p) = path else { return try self.item(path, of: item) }
        var current = item
        for part in p.split(separator: ".", omittingEmptySubsequences: false) {
            let key: Value = Int(part).map(Value.int) ?? .string(String(part))
            current = try self.item(key, of: current)
        }
        return current
    }

    private func sortKey(_ value: Value, caseSensitive: Bool) -> Value {
        if !caseSensitive, case .string(let s) = value { return .string(s.lowercased()) }
        return value
    }

    private func stableSorted(_ items: [Value], key: (Value) throws -> Value, reverse: Bool) throws -> [Value] {
        let keyed = try items.enumerated().map { (offset: $0.offset, key: try key($0.element), value: $0.element) }
        var failure: TemplateError?
        let sorted = keyed.sorted { a, b in
            guard let order = pythonOrder(a.key, b.key) else {
                failure = TemplateError(.type, "'<' not supported between instances of '\(a.key.typeName)' and '\(b.key.typeName)'")
                return a.offset < b.offset
            }
            if order == 0 { return a.offset < b.offset }
            return reverse ? order > 0 : order < 0
        }
        if let failure { throw failure }
        return sorted.map(\.value)
    }

    private func bool(_ args: CallArguments, _ index: Int, _ name: String, _ defaultValue: Bool = false) -> Bool {
        args.value(index, name)?.isTruthy ?? defaultValue
    }

    func callFilter(_ name: String, _ value: Value, _ args: CallArguments) throws -> Value {
        var value = value
        if case .undefined(let hint) = value {
            // As jinja2 behaves: string filters see str(Undefined) == "", iterating filters see an
            // empty sequence, and filters that need a number or a mapping raise.
            switch name {
            case "default", "d", "length", "count", "string", "safe", "items", "list", "join", "sort", "reverse",
                 "map", "select", "reject", "selectattr", "rejectattr", "unique", "sum", "batch":
                break
            case "first", "last", "min", "max":
                return .undefined(hint: "No \(name == "last" ? "last" : "first") item, sequence was empty.")
            case "abs": throw TemplateError(.type, "bad operand type for abs(): 'Undefined'")
            case "round": throw TemplateError(.type, "type Undefined doesn't define __round__ method")
            case "tojson": throw TemplateError(.type, "Object of type Undefined is not JSON serializable")
            case "indent", "int", "float", "dictsort", "attr": throw TemplateError(.undefined, hint)
            default: value = .string("")
            }
        }
        switch name {
        case "default", "d":
            let fallback = args.value(0, "default_value") ?? .string("")
            if value.isUndefined || (bool(args, 1, "boolean") && !value.isTruthy) { return fallback }
            return value
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a), .tuple(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined: return .int(0)
            case .namespace(let id): return .int(namespaces[id.index].count)
            default: throw TemplateError(.type, "object of type '\(value.typeName)' has no len()")
            }
        case "string": return .string(value.pythonString)
        case "safe": return .string(value.pythonString)  // Markup(value): a string
        case "items":
            switch value {
            case .undefined: return .array([])
            case .object(let o): return .array(o.pairs.map { .tuple([.string($0.key), $0.value]) })
            default: throw TemplateError(.type, "Can only get item pairs from a mapping.")
            }
        case "list": return .array(try iterate(value))
        case "trim": return .string(pyStrip(value.pythonString, try optionalString(args, 0, "chars"), leading: true, trailing: true))
        case "upper": return .string(value.pythonString.uppercased())
        case "lower": return .string(value.pythonString.lowercased())
        case "capitalize": return .string(pyCapitalize(value.pythonString))
        case "title": return .string(jinjaTitle(value.pythonString))
        case "escape", "e", "forceescape": return .string(htmlEscape(value.pythonString))
        case "wordcount": return .int(wordCount(value.pythonString))
        case "join":
            let separator = args.value(0, "d")?.pythonString ?? ""
            var items = try iterate(value)
            if let attribute = args.value(1, "attribute") { items = try items.map { try lookupPath($0, attribute) } }
            return .string(items.map(\.pythonString).joined(separator: separator))
        case "tojson":
            return .string(try toJSON(value, args))
        case "first":
            return try iterate(value).first ?? .undefined(hint: "No first item, sequence was empty.")
        case "last":
            return try iterate(value).last ?? .undefined(hint: "No last item, sequence was empty.")
        default:
            break
        }
        switch name {
        case "abs":
            switch value {
            case .int(let i): return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default: throw TemplateError(.type, "bad operand type for abs(): '\(value.typeName)'")
            }
        case "attr":
            guard case .string(let n)? = args.value(0, "name") else { throw TemplateError(.type, "attr() needs a name") }
            // Python getattr only: dict keys are not attributes here.
            if case .object = value, !Methods.has(n, on: value) {
                return .undefined(hint: "'dict object' has no attribute '\(n)'")
            }
            return try attribute(n, of: value)
        case "int":
            let fallback = args.value(0, "default") ?? .int(0)
            let base = args.value(1, "base")?.integer ?? 10
            switch value {
            case .int, .bool: return .int(value.integer!)
            case .double(let d): return d.isFinite ? .int(Int(d)) : fallback
            case .string(let s):
                let t = pyStrip(s, nil, leading: true, trailing: true).replacingAll("_", "")
                if let i = Int(t, radix: base) { return .int(i) }
                if let d = Double(t), d.isFinite { return .int(Int(d)) }
                return fallback
            default: return fallback
            }
        case "float":
            let fallback = args.value(0, "default") ?? .double(0)
            switch value {
            case .int, .bool, .double: return .double(value.numeric!)
            case .string(let s): return Double(pyStrip(s, nil, leading: true, trailing: true)).map(Value.double) ?? fallback
            default: return fallback
            }
        case "round":
            let precision = args.value(0, "precision")?.integer ?? 0
            let method = args.value(1, "method")?.pythonString ?? "common"
            if let i = value.integer, method == "common" { return .int(i) }  // round(int) is an int
            guard let d = value.numeric else { throw TemplateError(.type, "type \(value.typeName) doesn't define __round__ method") }
            let scale = pow(10.0, Double(precision))
            switch method {
            case "common":
                // Python's round(): half to even on the exact binary value; `%.*f` does the same.
                let text = String(format: "%.\(max(precision, 0))f", d)
                return .double(precision >= 0 ? Double(text)! : (d / scale).rounded(.toNearestOrEven) * scale)
            case "ceil": return .double((d * scale).rounded(.up) / scale)
            case "floor": return .double((d * scale).rounded(.down) / scale)
            default: throw TemplateError(.type, "method must be common, ceil or floor")
            }
        case "replace":
            guard let old = args.value(0, "old"), let new = args.value(1, "new") else {
                throw TemplateError(.type, "replace() needs old and new")
            }
            let count = args.value(2, "count").flatMap { $0.isNone ? nil : $0.integer } ?? -1
            return .string(pyReplace(value.pythonString, old.pythonString, new.pythonString, count: count))
        case "indent":
            // jinja2 appends "\n" to the value itself, which only works for strings.
            guard case .string(let text) = value else {
                throw TemplateError(.type, "indent needs a string, not \(value.typeName)")
            }
            return .string(indent(text, args))
        case "center":
            let width = args.value(0, "width")?.integer ?? 80
            try Limits.checkLength(width, "padded string")
            return try callMethod("center", on: .string(value.pythonString), CallArguments(positional: [.int(width)]))
        case "format":
            if !args.keyword.isEmpty { throw TemplateError(.unsupported, "the format filter with keyword arguments is not supported") }
            return .string(try printfFormat(value.pythonString, args.positional))
        case "reverse":
            if case .string(let s) = value { return .string(scalarString(s.unicodeScalars.reversed())) }
            return .array(try iterate(value).reversed())
        case "sort":
            let reverse = bool(args, 0, "reverse")
            let caseSensitive = bool(args, 1, "case_sensitive")
            let attribute = args.value(2, "attribute")
            return .array(try stableSorted(try iterate(value), key: { item in
                sortKey(try attribute.map { try lookupPath(item, $0) } ?? item, caseSensitive: caseSensitive)
            }, reverse: reverse))
        case "dictsort":
            guard case .object(let o) = value else { throw TemplateError(.type, "dictsort: You can only sort by either \"key\" or \"value\"") }
            let caseSensitive = bool(args, 0, "case_sensitive")
            let byValue = args.value(1, "by")?.pythonString == "value"
            let reverse = bool(args, 2, "reverse")
            let pairs: [Value] = o.pairs.map { .tuple([.string($0.key), $0.value]) }
            return .array(try stableSorted(pairs, key: { pair in
                sortKey(pair.sequence![byValue ? 1 : 0], caseSensitive: caseSensitive)
            }, reverse: reverse))
        case "unique":
            let caseSensitive = bool(args, 0, "case_sensitive")
            let attribute = args.value(1, "attribute")
            var seen: [Value] = []
            var out: [Value] = []
            for item in try iterate(value) {
                let key = sortKey(try attribute.map { try lookupPath(item, $0) } ?? item, caseSensitive: caseSensitive)
                switch key {
                case .array, .object: throw TemplateError(.type, "unhashable type: '\(key.typeName)'")
                default: break
                }
                if !seen.contains(where: { $0.pythonEquals(key) }) {
                    seen.append(key)
                    out.append(item)
                }
            }
            return .array(out)
        case "min", "max":
            let caseSensitive = bool(args, 0, "case_sensitive")
            let attribute = args.value(1, "attribute")
            let items = try iterate(value)
            guard !items.isEmpty else { return .undefined(hint: "No aggregated item, sequence was empty.") }
            let sorted = try stableSorted(items, key: { item in
                sortKey(try attribute.map { try lookupPath(item, $0) } ?? item, caseSensitive: caseSensitive)
            }, reverse: name == "max")
            return sorted[0]
        case "sum":
            let attribute = args.value(0, "attribute")
            var total = args.value(1, "start") ?? .int(0)
            for item in try iterate(value) {
                total = try binary("+", total, try attribute.map { try lookupPath(item, $0) } ?? item)
            }
            return total
        case "batch":
            guard let size = args.value(0, "linecount")?.integer, size > 0 else { throw TemplateError(.type, "batch needs a positive size") }
            try Limits.checkLength(size, "batch")
            let fill = args.value(1, "fill_with")
            let items = try iterate(value)
            var batches: [Value] = []
            var i = 0
            while i < items.count {
                var chunk = Array(items[i..<min(i + size, items.count)])
                if let fill, !fill.isNone, chunk.count < size { chunk += Array(repeating: fill, count: size - chunk.count) }
                batches.append(.array(chunk))
                i += size
            }
            return .array(batches)
        case "map":
            let items = value.isTruthy ? try iterate(value) : []
            if let attribute = args.keywordValue("attribute") {
                let fallback = args.keywordValue("default")
                return .array(try items.map { item in
                    let v = try lookupPath(item, attribute)
                    if let fallback, v.isUndefined { return fallback }
                    return v
                })
            }
            guard case .string(let filterName)? = args.positional.first else {
                throw TemplateError(.type, "map requires a filter argument")
            }
            guard Filters.names.contains(filterName) else { throw TemplateError(.type, "No filter named '\(filterName)' found.") }
            let rest = CallArguments(positional: Array(args.positional.dropFirst()), keyword: args.keyword)
            return .array(try items.map { try callFilter(filterName, $0, rest) })
        case "select", "reject", "selectattr", "rejectattr":
            let byAttribute = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            var positional = args.positional
            var attribute: Value?
            if byAttribute {
                guard !positional.isEmpty else { throw TemplateError(.type, "Missing parameter for attribute name") }
                attribute = positional.removeFirst()
            }
            var testName: String?
            if !positional.isEmpty {
                guard case .string(let t) = positional.removeFirst() else { throw TemplateError(.type, "test name must be a string") }
                guard Tests.names.contains(t) else { throw TemplateError(.type, "No test named '\(t)' found.") }
                testName = t
            }
            let testArgs = CallArguments(positional: positional, keyword: args.keyword)
            return .array(try (value.isTruthy ? iterate(value) : []).filter { item in
                let subject = try attribute.map { try lookupPath(item, $0) } ?? item
                let passed = try testName.map { try applyTest($0, to: subject, testArgs) } ?? subject.isTruthy
                return passed == keep
            })
        default:
            throw TemplateError(.type, "No filter named '\(name)' found.")
        }
    }

    private func optionalString(_ args: CallArguments, _ index: Int, _ name: String) throws -> String? {
        guard let v = args.value(index, name), !v.isNone else { return nil }
        return v.pythonString
    }

    /// jinja2's `do_indent`.
    private func indent(_ s: String, _ args: CallArguments) -> String {
        let widthValue = args.value(0, "width") ?? .int(4)
        let indention: String = if case .string(let w) = widthValue { w } else {
            String(repeating: " ", count: min(max(0, widthValue.integer ?? 4), 4096))
        }
        let first = bool(args, 1, "first")
        let blank = bool(args, 2, "blank")
        let lines = pySplitLines(s + "\n")
        var rv: String
        if blank {
            rv = lines.joined(separator: "\n" + indention)
        } else {
            rv = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                rv += "\n" + rest.map { $0.isEmpty ? $0 : indention + $0 }.joined(separator: "\n")
            }
        }
        if first { rv = indention + rv }
        return rv
    }
}

/// jinja2's `do_title`: words start after runs of `-`, whitespace, `(`, `{`, `[` or `<`.
func jinjaTitle(_ s: String) -> String {
    var out = ""
    var atWordStart = true
    for c in s {
        let isSeparator = c == "-" || c == "(" || c == "{" || c == "[" || c == "<" || c.unicodeScalars.allSatisfy(isPythonWhitespace)
        if isSeparator {
            out.append(c)
            atWordStart = true
        } else {
            out += atWordStart ? c.uppercased() : c.lowercased()
            atWordStart = false
        }
    }
    return out
}

/// markupsafe's `escape`.
func htmlEscape(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&#34;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

/// `len(re.findall(r"\w+", s))`.
func wordCount(_ s: String) -> Int {
    var count = 0
    var inWord = false
    for c in s.unicodeScalars {
        let isWord = c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
        if isWord && !inWord { count += 1 }
        inWord = isWord
    }
    return count
}
