// Python's two string-formatting languages, in the forms templates use: `"%s: %d" % (a, b)` and
// the `format` filter (printf style), and `"{} {name}".format(...)` (str.format with plain fields).

import Foundation

/// `format % args`, for the conversions %s %r %d %i %f %e %g %x %o %c and %%, with flags,
/// width and precision.
func printfFormat(_ format: String, _ args: [Value], allowUnused: Bool = false) throws -> String {
    var out = ""
    var scalars = Array(format.unicodeScalars)[...]
    var argIndex = 0
    func nextArg() throws -> Value {
        guard argIndex < args.count else { throw TemplateError(.type, "not enough arguments for format string") }
        defer { argIndex += 1 }
        return args[argIndex]
    }
    while let c = scalars.popFirst() {
        guard c == "%" else { out.unicodeScalars.append(c); continue }
        var spec = "%"
        while let f = scalars.first, "-+ #0".unicodeScalars.contains(f) { spec.unicodeScalars.append(f); scalars.removeFirst() }
        while let d = scalars.first, ("0"..."9").contains(d) { spec.unicodeScalars.append(d); scalars.removeFirst() }
        if scalars.first == "." {
            spec += "."
            scalars.removeFirst()
            while let d = scalars.first, ("0"..."9").contains(d) { spec.unicodeScalars.append(d); scalars.removeFirst() }
        }
        guard let conversion = scalars.popFirst() else { throw TemplateError(.type, "incomplete format") }
        switch conversion {
        case "%": out += "%"
        case "s", "r":
            let arg = try nextArg()
            let text = conversion == "s" ? arg.pythonString : arg.pythonRepr
            out += pad(text, spec: spec)
        case "d", "i", "u", "x", "X", "o", "c":
            let arg = try nextArg()
            guard let n = arg.integer ?? arg.numeric.map({ Int($0) }) else {
                throw TemplateError(.type, "%\(conversion) format: a real number is required, not \(arg.typeName)")
            }
            if conversion == "c" { out += pad(String(Character(Unicode.Scalar(UInt32(n)) ?? " ")), spec: spec); break }
            let cConversion = (conversion == "i" || conversion == "u") ? "d" : String(conversion)
            if n < 0, cConversion != "d" {
                // Python prints a sign and the magnitude (-ff), C the two's complement.
                out += "-" + String(format: spec + "l" + cConversion, n.magnitude)
            } else {
                out += String(format: spec + "l" + cConversion, n)
            }
        case "f", "F", "e", "E", "g", "G":
            let arg = try nextArg()
            guard let d = arg.numeric else {
                throw TemplateError(.type, "must be real number, not \(arg.typeName)")
            }
            out += String(format: spec + String(conversion), d)
        default:
            throw TemplateError(.type, "unsupported format character '\(conversion)'")
        }
    }
    guard argIndex >= args.count || allowUnused else {
        throw TemplateError(.type, "not all arguments converted during string formatting")
    }
    return out
}

/// Width and `-` flag for %s.
private func pad(_ text: String, spec: String) -> String {
    let body = spec.dropFirst()
    let leftAlign = body.contains("-")
    let digits = body.drop { "-+ #0".contains($0) }.prefix { $0.isNumber }
    let width = Int(digits) ?? 0
    var text = text
    if let dot = body.firstIndex(of: "."), let precision = Int(body[body.index(after: dot)...]) {
        text = scalarString(text.unicodeScalars.prefix(precision))
    }
    let length = text.unicodeScalars.count
    guard width > length else { return text }
    let padding = String(repeating: " ", count: width - length)
    return leftAlign ? text + padding : padding + text
}

/// `str.format(*args, **kwargs)` with `{}`, `{0}`, `{name}`, `{name.attr}`/`{0[key]}` are not
/// supported; format specs only for the simple fill/align/width/precision forms.
func pyFormat(_ format: String, _ args: CallArguments) throws -> String {
    var out = ""
    var scalars = Array(format.unicodeScalars)[...]
    var automatic = 0
    while let c = scalars.popFirst() {
        if c == "{" {
            if scalars.first == "{" { scalars.removeFirst(); out += "{"; continue }
            var field = ""
            while let f = scalars.popFirst(), f != "}" { field.unicodeScalars.append(f) }
            var spec = ""
            if let colon = field.firstIndex(of: ":") {
                spec = String(field[field.index(after: colon)...])
                field = String(field[..<colon])
            }
            var conversion: Character?
            if let bang = field.firstIndex(of: "!") {
                conversion = field[field.index(after: bang)...].first
                field = String(field[..<bang])
            }
            var value: Value
            if field.isEmpty {
                guard automatic < args.positional.count else {
                    throw TemplateError(.type, "Replacement index \(automatic) out of range for positional args tuple")
                }
                value = args.positional[automatic]
                automatic += 1
            } else if let index = Int(field) {
                guard index < args.positional.count else {
                    throw TemplateError(.type, "Replacement index \(index) out of range for positional args tuple")
                }
                value = args.positional[index]
            } else {
                guard let v = args.keywordValue(field) else { throw TemplateError(.type, "KeyError: '\(field)'") }
                value = v
            }
            if conversion == "r" { value = .string(value.pythonRepr) }
            out += try formatSpec(value, spec)
        } else if c == "}" {
            if scalars.first == "}" { scalars.removeFirst() }
            out += "}"
        } else {
            out.unicodeScalars.append(c)
        }
    }
    return out
}

/// A subset of Python's format-spec mini-language: `[[fill]align][width][.precision][type]`.
private func formatSpec(_ value: Value, _ spec: String) throws -> String {
    guard !spec.isEmpty else { return value.pythonString }
    var s = Array(spec)[...]
    var fill: Character = " "
    var align: Character?
    if s.count >= 2, "<>^".contains(s[s.startIndex + 1]) {
        fill = s.removeFirst()
        align = s.removeFirst()
    } else if let f = s.first, "<>^".contains(f) {
        align = s.removeFirst()
    }
    var widthText = ""
    while let d = s.first, d.isNumber { widthText.append(d); s.removeFirst() }
    var precision: Int?
    if s.first == "." {
        s.removeFirst()
        var p = ""
        while let d = s.first, d.isNumber { p.append(d); s.removeFirst() }
        precision = Int(p)
    }
    let type = s.first
    var text: String
    switch type {
    case "f"?, "F"?:
        guard let d = value.numeric else { throw TemplateError(.type, "Unknown format code 'f' for \(value.typeName)") }
        text = String(format: "%.\(precision ?? 6)f", d)
    case "d"?:
        guard let i = value.integer else { throw TemplateError(.type, "Unknown format code 'd' for \(value.typeName)") }
        text = String(i)
    case nil, "s"?:
        text = value.pythonString
        if let precision, case .string = value { text = scalarString(text.unicodeScalars.prefix(precision)) }
    default:
        throw TemplateError(.unsupported, "format spec '\(spec)' is not supported")
    }
    let width = Int(widthText) ?? 0
    let length = text.unicodeScalars.count
    guard width > length else { return text }
    let padCount = width - length
    let numeric: Bool = if case .string = value { false } else { true }
    switch align ?? (numeric ? ">" : "<") {
    case ">": return String(repeating: fill, count: padCount) + text
    case "^":
        let left = padCount / 2
        return String(repeating: fill, count: left) + text + String(repeating: fill, count: padCount - left)
    default: return text + String(repeating: fill, count: padCount)
    }
}

/// `datetime.now().strftime(format)` in local time.
func formatCurrentTime(_ format: String) -> String {
    var now = time(nil)
    var parts = tm()
    localtime_r(&now, &parts)
    var buffer = [Int8](repeating: 0, count: 512)
    let count = strftime(&buffer, buffer.count, format, &parts)
    return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
