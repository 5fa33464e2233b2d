// Tokenizer matching jinja2's `Lexer` (jinja2/lexer.py) with the options transformers uses:
// `trim_blocks=True` (drop the first newline after `%}` and `#}`), `lstrip_blocks=True` (drop
// spaces and tabs before `{%`/`{#` when only they precede the tag on its line),
// `keep_trailing_newline=False`, and `-`/`+` whitespace control on every tag.

struct Token: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case eof
    }

    var kind: Kind
    var line: Int
    var column: Int
}

public struct LexerOptions: Sendable {
    public var trimBlocks = true
    public var lstripBlocks = true
    public init(trimBlocks: Bool = true, lstripBlocks: Bool = true) {
        self.trimBlocks = trimBlocks
        self.lstripBlocks = lstripBlocks
    }
}

struct Lexer {
    private let source: [Unicode.Scalar]
    private let options: LexerOptions
    private var pos = 0
    private var tokens: [Token] = []
    /// Whether the previous match ended with a newline (jinja2's `line_starting`).
    private var lineStarting = true
    /// Offsets where each line starts, to turn offsets into line/column.
    private let lineStarts: [Int]

    init(_ text: String, options: LexerOptions = LexerOptions()) {
        // jinja2 splits on \r\n, \r and \n, joins with \n and drops one trailing newline.
        var scalars: [Unicode.Scalar] = []
        var iterator = text.unicodeScalars.makeIterator()
        var pending = iterator.next()
        while let s = pending {
            pending = iterator.next()
            if s == "\r" {
                scalars.append("\n")
                if pending == "\n" { pending = iterator.next() }
            } else {
                scalars.append(s)
            }
        }
        if scalars.last == "\n" { scalars.removeLast() }
        source = scalars
        self.options = options
        var starts = [0]
        for (i, s) in scalars.enumerated() where s == "\n" { starts.append(i + 1) }
        lineStarts = starts
    }

    static func tokenize(_ text: String, options: LexerOptions = LexerOptions()) throws -> [Token] {
        var lexer = Lexer(text, options: options)
        return try lexer.run()
    }

    private func position(_ offset: Int) -> (line: Int, column: Int) {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return (lo + 1, offset - lineStarts[lo] + 1)
    }

    private func error(_ message: String, at offset: Int) -> TemplateError {
        let p = position(offset)
        return TemplateError(.syntax, message, line: p.line, column: p.column)
    }

    private mutating func emit(_ kind: Token.Kind, at offset: Int) {
        let p = position(offset)
        tokens.append(Token(kind: kind, line: p.line, column: p.column))
    }

    private func starts(with text: String, at offset: Int) -> Bool {
        var i = offset
        for s in text.unicodeScalars {
            guard i < source.count, source[i] == s else { return false }
            i += 1
        }
        return true
    }

    /// The operator starting at `offset`, longest first.
    private func operatorAt(_ offset: Int) -> String? {
        let c = source[offset]
        let next: Unicode.Scalar? = offset + 1 < source.count ? source[offset + 1] : nil
        switch (c, next) {
        case ("/", "/"): return "//"
        case ("*", "*"): return "**"
        case ("=", "="): return "=="
        case ("!", "="): return "!="
        case (">", "="): return ">="
        case ("<", "="): return "<="
        default:
            switch c {
            case "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";":
                return String(c)
            default:
                return nil
            }
        }
    }

    private func string(_ range: Range<Int>) -> String {
        var s = String()
        s.unicodeScalars.append(contentsOf: source[range])
        return s
    }

    /// Offset after any whitespace starting at `offset`.
    private func skipWhitespace(_ offset: Int) -> Int {
        var i = offset
        while i < source.count, isPythonWhitespace(source[i]) { i += 1 }
        return i
    }

    private mutating func run() throws -> [Token] {
        while pos < source.count {
            try lexData()
        }
        emit(.eof, at: source.count)
        return tokens
    }

    /// Text up to the next tag, then the tag.
    private mutating func lexData() throws {
        var i = pos
        var tagStart: Int?
        while i + 1 < source.count {
            if source[i] == "{", source[i + 1] == "{" || source[i + 1] == "%" || source[i + 1] == "#" {
                tagStart = i
                break
            }
            i += 1
        }
        guard let start = tagStart else {
            emit(.text(string(pos..<source.count)), at: pos)
            pos = source.count
            return
        }
        let kind = source[start + 1]
        var afterTag = start + 2
        var sign: Unicode.Scalar?
        if afterTag < source.count, source[afterTag] == "-" || source[afterTag] == "+" {
            sign = source[afterTag]
            afterTag += 1
        }
        emitText(pos..<start, sign: sign, isVariable: kind == "{")
        lineStarting = false
        pos = afterTag
        switch kind {
        case "#":
            try lexComment(start: start)
        case "%":
            if let rawEnd = rawBlockHeader(at: afterTag) {
                pos = rawEnd
                try lexRaw(start: start)
            } else {
                emit(.blockBegin, at: start)
                try lexTag(isBlock: true, start: start)
            }
        default:
            emit(.variableBegin, at: start)
            try lexTag(isBlock: false, start: start)
        }
    }

    /// Emit the text before a tag, applying `-` (strip all whitespace) or lstrip_blocks.
    private mutating func emitText(_ range: Range<Int>, sign: Unicode.Scalar?, isVariable: Bool) {
        var end = range.upperBound
        if sign == "-" {
            while end > range.lowerBound, isPythonWhitespace(source[end - 1]) { end -= 1 }
        } else if sign != "+", options.lstripBlocks, !isVariable {
            var lineStart = range.lowerBound
            if let nl = source[range].lastIndex(of: "\n") { lineStart = nl + 1 }
            if lineStart > range.lowerBound || lineStarting {
                let rest = source[lineStart..<range.upperBound]
                if !rest.isEmpty, rest.allSatisfy(isPythonWhitespace) { end = lineStart }
            }
        }
        if end > range.lowerBound { emit(.text(string(range.lowerBound..<end)), at: range.lowerBound) }
    }

    /// Consume a tag end: `+%}` keeps what follows, `-%}` strips all following whitespace, and a
    /// plain block or comment end drops one newline under trim_blocks.
    private mutating func consumeEnd(_ closer: String, at offset: Int, trims: Bool) -> Bool {
        guard offset < source.count else { return false }
        switch source[offset] {
        case "+", "-", "%", "}", "#": break
        default: return false
        }
        if trims, starts(with: "+" + closer, at: offset) {
            pos = offset + 1 + closer.unicodeScalars.count
            lineStarting = false
        } else if starts(with: "-" + closer, at: offset) {
            let end = offset + 1 + closer.unicodeScalars.count
            pos = skipWhitespace(end)
            lineStarting = pos > end ? source[pos - 1] == "\n" : false
        } else if starts(with: closer, at: offset) {
            pos = offset + closer.unicodeScalars.count
            lineStarting = false
            if trims, options.trimBlocks, pos < source.count, source[pos] == "\n" {
                pos += 1
                lineStarting = true
            }
        } else {
            return false
        }
        return true
    }

    private mutating func lexComment(start: Int) throws {
        var i = pos
        while i < source.count {
            if consumeEnd("#}", at: i, trims: true) { return }
            i += 1
        }
        throw error("Missing end of comment tag", at: start)
    }

    /// If `{% raw %}` starts here (after `{%` and its sign), the offset after its `%}`.
    private func rawBlockHeader(at offset: Int) -> Int? {
        var i = skipWhitespace(offset)
        guard starts(with: "raw", at: i) else { return nil }
        i = skipWhitespace(i + 3)
        if starts(with: "-%}", at: i) { return skipWhitespace(i + 3) }
        if starts(with: "%}", at: i) { return i + 2 }
        return nil
    }

    private mutating func lexRaw(start: Int) throws {
        var i = pos
        while i + 1 < source.count {
            if source[i] == "{", source[i + 1] == "%" {
                var j = i + 2
                var sign: Unicode.Scalar?
                if j < source.count, source[j] == "-" || source[j] == "+" { sign = source[j]; j += 1 }
                j = skipWhitespace(j)
                if starts(with: "endraw", at: j) {
                    j = skipWhitespace(j + 6)
                    let textRange = pos..<i
                    let saved = pos
                    pos = j
                    if consumeEnd("%}", at: j, trims: true) {
                        let after = pos
                        pos = saved
                        emitText(textRange, sign: sign, isVariable: false)
                        pos = after
                        return
                    }
                    pos = saved
                }
            }
            i += 1
        }
        throw error("Missing end of raw directive", at: start)
    }

    private mutating func lexTag(isBlock: Bool, start: Int) throws {
        var balance: [Unicode.Scalar] = []
        while true {
            guard pos < source.count else {
                throw error("unexpected end of template, expected the end of the tag opened here", at: start)
            }
            if balance.isEmpty {
                let offset = pos
                if isBlock ? consumeEnd("%}", at: offset, trims: true) : consumeEnd("}}", at: offset, trims: false) {
                    emit(isBlock ? .blockEnd : .variableEnd, at: offset)
                    return
                }
            }
            let c = source[pos]
            if isPythonWhitespace(c) {
                pos += 1
            } else if ("0"..."9").contains(c) {
                try lexNumber()
            } else if Lexer.isNameStart(c) {
                let begin = pos
                while pos < source.count, Lexer.isNameContinue(source[pos]) { pos += 1 }
                emit(.name(string(begin..<pos)), at: begin)
            } else if c == "'" || c == "\"" {
                try lexString()
            } else if let op = operatorAt(pos) {
                let begin = pos
                pos += op.unicodeScalars.count
                switch op {
                case "(": balance.append(")")
                case "[": balance.append("]")
                case "{": balance.append("}")
                case ")", "]", "}":
                    guard let expected = balance.popLast() else { throw error("unexpected '\(op)'", at: begin) }
                    guard String(expected) == op else {
                        throw error("unexpected '\(op)', expected '\(expected)'", at: begin)
                    }
                default: break
                }
                emit(.op(op), at: begin)
            } else {
                throw error("unexpected char \(pythonStringRepr(String(c))) at \(pos)", at: pos)
            }
        }
    }

    private func isDigit(_ i: Int) -> Bool { i < source.count && ("0"..."9").contains(source[i]) }

    /// Python identifiers: ASCII fast path, then Unicode XID properties.
    static func isNameStart(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII { return ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" }
        return c.properties.isXIDStart
    }

    static func isNameContinue(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII { return ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "_" }
        return c.properties.isXIDContinue
    }

    /// Digits with optional single underscores between them: `(\d+_)*\d+`.
    private func digitRun(_ i: Int) -> Int? {
        guard isDigit(i) else { return nil }
        var j = i
        while isDigit(j) || (j < source.count && source[j] == "_" && isDigit(j + 1)) { j += 1 }
        return j
    }

    private mutating func lexNumber() throws {
        let begin = pos
        var radixPrefix: (String, Int)?
        if source[pos] == "0", pos + 1 < source.count {
            switch source[pos + 1] {
            case "x", "X": radixPrefix = ("0x", 16)
            case "o", "O": radixPrefix = ("0o", 8)
            case "b", "B": radixPrefix = ("0b", 2)
            default: break
            }
        }
        if let (_, radix) = radixPrefix {
            var j = pos + 2
            while j < source.count, source[j] == "_" || Int(String(source[j]), radix: radix) != nil { j += 1 }
            let digits = string((pos + 2)..<j).replacingAll("_", "")
            if let value = Int(digits, radix: radix) {
                pos = j
                emit(.integer(value), at: begin)
                return
            }
        }
        let intEnd = digitRun(pos)!
        var end = intEnd
        var isFloat = false
        let afterDot = begin > 0 && source[begin - 1] == "."
        if !afterDot, end < source.count, source[end] == ".", let fracEnd = digitRun(end + 1) {
            end = fracEnd
            isFloat = true
        }
        if !afterDot, end < source.count, source[end] == "e" || source[end] == "E" {
            var j = end + 1
            if j < source.count, source[j] == "+" || source[j] == "-" { j += 1 }
            if let expEnd = digitRun(j) {
                end = expEnd
                isFloat = true
            }
        }
        var text = string(begin..<end)
        if text.contains("_") { text = text.replacingAll("_", "") }
        pos = end
        if isFloat {
            guard let value = Double(text) else { throw error("invalid float literal \(text)", at: begin) }
            emit(.float(value), at: begin)
        } else {
            guard let value = Int(text) else { throw error("integer literal \(text) is too large", at: begin) }
            emit(.integer(value), at: begin)
        }
    }

    private mutating func lexString() throws {
        let begin = pos
        let quote = source[pos]
        var i = pos + 1
        while i < source.count, source[i] != quote {
            if source[i] == "\\" { i += 1 }
            i += 1
        }
        guard i < source.count else {
            throw error("unexpected char \(pythonStringRepr(String(quote))) at \(begin)", at: begin)
        }
        let body = Array(source[(begin + 1)..<i])
        pos = i + 1
        emit(.string(try unescape(body, at: begin)), at: begin)
    }

    /// Python's `unicode-escape` decoding, as jinja2 applies it to string literals.
    private func unescape(_ body: [Unicode.Scalar], at offset: Int) throws -> String {
        var out = String.UnicodeScalarView()
        var i = 0
        func hexValue(_ count: Int, _ name: String) throws -> Unicode.Scalar {
            guard i + count <= body.count else {
                throw error("truncated \\\(name) escape", at: offset)
            }
            var text = ""
            text.unicodeScalars.append(contentsOf: body[i..<(i + count)])
            guard text.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit }),
                  let v = UInt32(text, radix: 16), let s = Unicode.Scalar(v)
            else { throw error("truncated \\\(name) escape", at: offset) }
            i += count
            return s
        }
        while i < body.count {
            let c = body[i]
            i += 1
            guard c == "\\", i < body.count else { out.append(c); continue }
            let e = body[i]
            i += 1
            switch e {
            case "\n": break
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "v": out.append("\u{0B}")
            case "x": out.append(try hexValue(2, "xXX"))
            case "u": out.append(try hexValue(4, "uXXXX"))
            case "U": out.append(try hexValue(8, "UXXXXXXXX"))
            case "0"..."7":
                var v = e.value - 48
                var n = 1
                while n < 3, i < body.count, ("0"..."7").contains(body[i]) {
                    v = v * 8 + body[i].value - 48
                    i += 1
                    n += 1
                }
                out.append(Unicode.Scalar(v)!)
            default:
                out.append("\\")
                out.append(e)
            }
        }
        return String(out)
    }
}

extension String {
    func replacingAll(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        return pySplit(target).joined(separator: replacement)
    }

    /// Python `str.split(sep)` with an explicit separator, on code points.
    func pySplit(_ separator: String) -> [String] {
        let s = Array(unicodeScalars), sep = Array(separator.unicodeScalars)
        guard !sep.isEmpty else { return [self] }
        var parts: [String] = []
        var current = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            if i + sep.count <= s.count, Array(s[i..<(i + sep.count)]) == sep {
                parts.append(String(current))
                current = String.UnicodeScalarView()
                i += sep.count
            } else {
                current.append(s[i])
                i += 1
            }
        }
        parts.append(String(current))
        return parts
    }
}
