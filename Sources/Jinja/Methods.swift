// Python methods templates call on strings, dicts and lists. Mutating methods exist (so the
// attribute resolves, as in Python) but raise, as jinja2's ImmutableSandboxedEnvironment does.

enum Methods {
    static let string: Set<String> = [
        "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines",
        "upper", "lower", "title", "capitalize", "swapcase", "casefold", "replace", "format",
        "find", "rfind", "index", "rindex", "count", "join", "isdigit", "isalpha", "isalnum",
        "isspace", "isupper", "islower", "isnumeric", "isdecimal", "removeprefix", "removesuffix",
        "zfill", "center", "ljust", "rjust", "partition", "rpartition",
    ]
    static let dict: Set<String> = ["items", "keys", "values", "get", "copy"]
    static let dictUnsafe: Set<String> = ["pop", "popitem", "setdefault", "update", "clear"]
    static let list: Set<String> = ["index", "count", "copy"]
    static let listUnsafe: Set<String> = ["append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"]

    static func has(_ name: String, on value: Value) -> Bool {
        switch value {
        case .string: return string.contains(name)
        case .object: return dict.contains(name) || dictUnsafe.contains(name)
        case .array: return list.contains(name) || listUnsafe.contains(name)
        case .tuple: return name == "index" || name == "count"
        default: return false
        }
    }
}

extension Interpreter {
    func callMethod(_ name: String, on receiver: Value, _ args: CallArguments) throws -> Value {
        switch receiver {
        case .string(let s): return try callStringMethod(name, s, args)
        case .object(let o):
            switch name {
            case "items": return .array(o.pairs.map { .tuple([.string($0.key), $0.value]) })
            case "keys": return .array(o.keys.map(Value.string))
            case "values": return .array(o.values)
            case "copy": return receiver
            case "get":
                guard let key = args.value(0, "key") else { throw TemplateError(.type, "get expected at least 1 argument, got 0") }
                if case .string(let k) = key, let v = o[k] { return v }
                return args.value(1, "default") ?? .none
            default: break
            }
        case .array(let a), .tuple(let a):
            switch name {
            case "copy": return receiver
            case "count":
                guard let x = args.value(0, "value") else { throw TemplateError(.type, "count() takes exactly one argument (0 given)") }
                return .int(a.filter { $0.pythonEquals(x) }.count)
            case "index":
                guard let x = args.value(0, "value") else { throw TemplateError(.type, "index expected at least 1 argument, got 0") }
                guard let i = a.firstIndex(where: { $0.pythonEquals(x) }) else {
                    throw TemplateError(.type, "\(x.pythonRepr) is not in list")
                }
                return .int(i)
            default: break
            }
        default: break
        }
        throw TemplateError(.security, "access to attribute '\(name)' of '\(receiver.typeName)' object is unsafe.")
    }

    private func stringArgument(_ args: CallArguments, _ index: Int, _ name: String) throws -> String? {
        guard let v = args.value(index, name), !v.isNone else { return nil }
        guard case .string(let s) = v else {
            throw TemplateError(.type, "\(name) must be str or None, not \(v.typeName)")
        }
        return s
    }

    private func callStringMethod(_ name: String, _ s: String, _ args: CallArguments) throws -> Value {
        switch name {
        case "startswith", "endswith":
            guard let arg = args.value(0, "prefix") else { throw TemplateError(.type, "\(name) takes at least 1 argument (0 given)") }
            let candidates: [Value] = arg.sequence ?? [arg]
            let scalars = Array(s.unicodeScalars)
            for candidate in candidates {
                guard case .string(let c) = candidate else {
                    throw TemplateError(.type, "\(name) first arg must be str or a tuple of str, not \(candidate.typeName)")
                }
                let cs = Array(c.unicodeScalars)
                guard cs.count <= scalars.count else { continue }
                let part = name == "startswith" ? Array(scalars.prefix(cs.count)) : Array(scalars.suffix(cs.count))
                if part == cs { return .bool(true) }
            }
            return .bool(false)
        case "strip": return .string(pyStrip(s, try stringArgument(args, 0, "chars"), leading: true, trailing: true))
        case "lstrip": return .string(pyStrip(s, try stringArgument(args, 0, "chars"), leading: true, trailing: false))
        case "rstrip": return .string(pyStrip(s, try stringArgument(args, 0, "chars"), leading: false, trailing: true))
        case "split", "rsplit":
            let sep = try stringArgument(args, 0, "sep")
            let maxsplit = args.value(1, "maxsplit")?.integer ?? -1
            if sep == "" { throw TemplateError(.type, "empty separator") }
            return .array(pySplitString(s, sep, maxsplit: maxsplit, fromRight: name == "rsplit").map(Value.string))
        case "splitlines":
            return .array(pySplitLines(s).map(Value.string))
        case "upper": return .string(s.uppercased())
        case "lower": return .string(s.lowercased())
        case "casefold": return .string(s.lowercased())
        case "title": return .string(pyTitle(s))
        case "capitalize": return .string(pyCapitalize(s))
        case "swapcase":
            return .string(String(s.map { c in c.isUppercase ? Character(c.lowercased()) : Character(c.uppercased()) }))
        case "replace":
            guard let old = try stringArgument(args, 0, "old"), let new = try stringArgument(args, 1, "new") else {
                throw TemplateError(.type, "replace expected at least 2 arguments")
            }
            return .string(pyReplace(s, old, new, count: args.value(2, "count")?.integer ?? -1))
        case "format":
            return .string(try pyFormat(s, args))
        case "find", "rfind", "index", "rindex":
            guard let sub = try stringArgument(args, 0, "sub") else { throw TemplateError(.type, "\(name) takes at least 1 argument") }
            let hay = Array(s.unicodeScalars), needle = Array(sub.unicodeScalars)
            var found = -1
            if needle.count <= hay.count {
                let positions = Array(0...(hay.count - needle.count))
                for i in (name.hasPrefix("r") ? positions.reversed() : positions) where Array(hay[i..<(i + needle.count)]) == needle {
                    found = i
                    break
                }
            }
            if found < 0 && name.hasSuffix("index") { throw TemplateError(.type, "substring not found") }
            return .int(found)
        case "count":
            guard let sub = try stringArgument(args, 0, "sub") else { throw TemplateError(.type, "count takes at least 1 argument") }
            if sub.isEmpty { return .int(s.unicodeScalars.count + 1) }
            return .int(s.pySplit(sub).count - 1)
        case "join":
            guard let iterable = args.value(0, "iterable") else { throw TemplateError(.type, "join() takes exactly one argument (0 given)") }
            let parts = try iterate(iterable).map { v -> String in
                guard case .string(let p) = v else {
                    throw TemplateError(.type, "sequence item: expected str instance, \(v.typeName) found")
                }
                return p
            }
            return .string(parts.joined(separator: s))
        case "isdigit", "isnumeric", "isdecimal":
            return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType != nil })
        case "isalpha": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
        case "isalnum":
            return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
        case "isspace": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(isPythonWhitespace))
        case "isupper": return .bool(s.contains { $0.isCased } && !s.contains { $0.isLowercase })
        case "islower": return .bool(s.contains { $0.isCased } && !s.contains { $0.isUppercase })
        case "removeprefix":
            let p = try stringArgument(args, 0, "prefix") ?? ""
            let (a, b) = (Array(s.unicodeScalars), Array(p.unicodeScalars))
            return .string(b.count <= a.count && Array(a.prefix(b.count)) == b ? scalarString(a.dropFirst(b.count)) : s)
        case "removesuffix":
            let p = try stringArgument(args, 0, "suffix") ?? ""
            let (a, b) = (Array(s.unicodeScalars), Array(p.unicodeScalars))
            return .string(!b.isEmpty && b.count <= a.count && Array(a.suffix(b.count)) == b ? scalarString(a.dropLast(b.count)) : s)
        case "zfill", "center", "ljust", "rjust":
            let width = args.value(0, "width")?.integer ?? 0
            try Limits.checkLength(width, "padded string")
            let fill = (try stringArgument(args, 1, "fillchar")) ?? (name == "zfill" ? "0" : " ")
            let length = s.unicodeScalars.count
            guard width > length else { return .string(s) }
            let pad = width - length
            switch name {
            case "ljust": return .string(s + String(repeating: fill, count: pad))
            case "rjust": return .string(String(repeating: fill, count: pad) + s)
            case "center":
                // CPython: left = pad/2 + (pad & width & 1)
                let left = pad / 2 + (pad & width & 1)
                return .string(String(repeating: fill, count: left) + s + String(repeating: fill, count: pad - left))
            default:
                if let first = s.unicodeScalars.first, first == "-" || first == "+" {
                    return .string(String(first) + String(repeating: "0", count: pad) + scalarString(Array(s.unicodeScalars.dropFirst())[...]))
                }
                return .string(String(repeating: "0", count: pad) + s)
            }
        case "partition", "rpartition":
            guard let sep = try stringArgument(args, 0, "sep"), !sep.isEmpty else { throw TemplateError(.type, "empty separator") }
            let parts = s.pySplit(sep)
            if parts.count == 1 { return name == "partition" ? .tuple([.string(s), "", ""]) : .tuple(["", "", .string(s)]) }
            if name == "partition" {
                return .tuple([.string(parts[0]), .string(sep), .string(parts.dropFirst().joined(separator: sep))])
            }
            return .tuple([.string(parts.dropLast().joined(separator: sep)), .string(sep), .string(parts.last!)])
        default:
            throw TemplateError(.security, "access to attribute '\(name)' of 'str' object is unsafe.")
        }
    }
}

func scalarString<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
    var view = String.UnicodeScalarView()
    view.append(contentsOf: scalars)
    return String(view)
}

/// Python `str.strip(chars)`; `chars == nil` strips whitespace.
func pyStrip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
    let set = chars.map { Set($0.unicodeScalars) }
    let strip: (Unicode.Scalar) -> Bool = { set?.contains($0) ?? isPythonWhitespace($0) }
    var scalars = Array(s.unicodeScalars)[...]
    if leading { while let f = scalars.first, strip(f) { scalars.removeFirst() } }
    if trailing { while let l = scalars.last, strip(l) { scalars.removeLast() } }
    return scalarString(scalars)
}

/// Python `str.split(sep, maxsplit)` / `rsplit`; `sep == nil` splits on whitespace runs.
func pySplitString(_ s: String, _ sep: String?, maxsplit: Int, fromRight: Bool) -> [String] {
    if let sep {
        var parts = s.pySplit(sep)
        if maxsplit >= 0 && parts.count > maxsplit + 1 {
            if fromRight {
                let head = parts[..<(parts.count - maxsplit)].joined(separator: sep)
                parts = [head] + parts[(parts.count - maxsplit)...]
            } else {
                let tail = parts[maxsplit...].joined(separator: sep)
                parts = Array(parts[..<maxsplit]) + [tail]
            }
        }
        return parts
    }
    var scalars = Array(s.unicodeScalars)
    if fromRight { scalars.reverse() }
    var parts: [String] = []
    var i = 0
    while i < scalars.count {
        while i < scalars.count, isPythonWhitespace(scalars[i]) { i += 1 }
        guard i < scalars.count else { break }
        if maxsplit >= 0 && parts.count == maxsplit {
            let rest = Array(scalars[i...])
            parts.append(scalarString(fromRight ? rest.reversed() : rest))
            break
        }
        let start = i
        while i < scalars.count, !isPythonWhitespace(scalars[i]) { i += 1 }
        let word = scalars[start..<i]
        parts.append(scalarString(fromRight ? Array(word.reversed()) : Array(word)))
    }
    return fromRight ? parts.reversed() : parts
}

/// Python `str.splitlines()`.
func pySplitLines(_ s: String) -> [String] {
    let scalars = Array(s.unicodeScalars)
    var lines: [String] = []
    var start = 0, i = 0
    while i < scalars.count {
        let c = scalars[i]
        switch c.value {
        case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
            lines.append(scalarString(scalars[start..<i]))
            if c == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
            start = i + 1
        default: break
        }
        i += 1
    }
    if start < scalars.count { lines.append(scalarString(scalars[start...])) }
    return lines
}

/// Python `str.replace(old, new, count)`.
func pyReplace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
    if old.isEmpty {
        // Python inserts `new` between every character and at both ends.
        var pieces = s.unicodeScalars.map { String($0) }
        var out = ""
        var inserted = 0
        pieces.append("")
        for p in pieces {
            if count < 0 || inserted < count { out += new; inserted += 1 }
            out += p
        }
        return out
    }
    let parts = s.pySplit(old)
    guard count >= 0, parts.count - 1 > count else { return parts.joined(separator: new) }
    return parts[...count].joined(separator: new) + old + parts[(count + 1)...].joined(separator: old)
}

/// Python `str.title()`: a cased character after an uncased one starts a word.
func pyTitle(_ s: String) -> String {
    var out = ""
    var previousCased = false
    for c in s {
        out += previousCased ? c.lowercased() : c.uppercased()
        previousCased = c.isCased
    }
    return out
}

/// Python `str.capitalize()`.
func pyCapitalize(_ s: String) -> String {
    guard let first = s.first else { return s }
    return first.uppercased() + s.dropFirst().lowercased()
}
