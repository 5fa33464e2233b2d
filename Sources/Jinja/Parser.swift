// Recursive-descent parser following jinja2/parser.py, with the same precedence:
// conditional < or < and < not < comparisons < + - < ~ < * / // % < ** < unary - + < postfix
// (`.attr`, `[item]`, `(call)`) < filters `|f` and tests `is t`.

struct Parser {
    private let tokens: [Token]
    private var index = 0
    /// Names of the blocks now open, innermost last, for "unexpected end of template" messages.
    private var openBlocks: [String] = []
    private var loopDepth = 0
    /// Current nesting of expressions and blocks, against `Limits.nesting`.
    private var nesting = 0

    private mutating func enter() throws {
        nesting += 1
        guard nesting <= Limits.nesting else { throw fail("template nested too deeply (over \(Limits.nesting) levels)") }
    }

    init(tokens: [Token]) {
        self.tokens = tokens
    }

    static func parse(_ source: String, options: LexerOptions = LexerOptions()) throws -> [Statement] {
        var parser = Parser(tokens: try Lexer.tokenize(source, options: options))
        return try parser.parseTemplate()
    }

    // MARK: Token stream

    private var current: Token { tokens[index] }
    private var next: Token { tokens[min(index + 1, tokens.count - 1)] }

    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func fail(_ message: String, _ token: Token? = nil) -> TemplateError {
        let t = token ?? current
        return TemplateError(.syntax, message, line: t.line, column: t.column)
    }

    private func describe(_ token: Token) -> String {
        switch token.kind {
        case .text: return "template data"
        case .variableBegin: return "begin of print statement"
        case .variableEnd: return "end of print statement"
        case .blockBegin: return "begin of statement block"
        case .blockEnd: return "end of statement block"
        case .name(let n): return n
        case .string: return "string"
        case .integer, .float: return "number"
        case .op(let o): return o
        case .eof: return "end of template"
        }
    }

    private func isName(_ name: String, _ token: Token? = nil) -> Bool {
        if case .name(name) = (token ?? current).kind { return true }
        return false
    }

    private func isOp(_ op: String, _ token: Token? = nil) -> Bool {
        if case .op(op) = (token ?? current).kind { return true }
        return false
    }

    private mutating func skipName(_ name: String) -> Bool {
        guard isName(name) else { return false }
        _ = advance()
        return true
    }

    private mutating func skipOp(_ op: String) -> Bool {
        guard isOp(op) else { return false }
        _ = advance()
        return true
    }

    private mutating func expectOp(_ op: String) throws {
        guard skipOp(op) else { throw fail("expected token '\(op)', got '\(describe(current))'") }
    }

    private mutating func expectName() throws -> String {
        guard case .name(let n) = current.kind else {
            throw fail("expected token 'name', got '\(describe(current))'")
        }
        _ = advance()
        return n
    }

    private mutating func expectBlockEnd() throws {
        guard case .blockEnd = current.kind else {
            throw fail("expected token 'end of statement block', got '\(describe(current))'")
        }
        _ = advance()
    }

    // MARK: Statements

    mutating func parseTemplate() throws -> [Statement] {
        try subparse(endTokens: [])
    }

    /// Statements until a block tag named in `endTokens` (left unconsumed) or the end.
    private mutating func subparse(endTokens: [String]) throws -> [Statement] {
        var body: [Statement] = []
        while true {
            let token = current
            switch token.kind {
            case .text(let s):
                _ = advance()
                body.append(Statement(kind: .text(s), line: token.line, column: token.column))
            case .variableBegin:
                _ = advance()
                let expr = try parseTuple()
                guard case .variableEnd = current.kind else {
                    throw fail("expected token 'end of print statement', got '\(describe(current))'")
                }
                _ = advance()
                body.append(Statement(kind: .output(expr), line: token.line, column: token.column))
            case .blockBegin:
                _ = advance()
                if case .name(let n) = current.kind, endTokens.contains(n) { return body }
                body.append(try parseStatement(begin: token))
                try expectBlockEnd()
            case .eof:
                if !endTokens.isEmpty {
                    let expected = endTokens.map { "'\($0)'" }.joined(separator: " or ")
                    var message = "Unexpected end of template. Jinja was looking for the following tags: \(expected)."
                    if let innermost = openBlocks.last {
                        message += " The innermost block that needs to be closed is '\(innermost)'."
                    }
                    throw fail(message)
                }
                return body
            default:
                throw fail("unexpected '\(describe(token))'")
            }
        }
    }

    /// The body of a block up to one of `endTokens`; consumes the end tag's name if `dropNeedle`.
    private mutating func parseStatements(_ endTokens: [String], dropNeedle: Bool = false) throws -> [Statement] {
        _ = skipOp(":")
        try expectBlockEnd()
        let body = try subparse(endTokens: endTokens)
        if dropNeedle { _ = advance() }
        return body
    }

    private mutating func parseStatement(begin: Token) throws -> Statement {
        guard case .name(let keyword) = current.kind else { throw fail("tag name expected") }
        try enter()
        defer { nesting -= 1 }
        let make = { (kind: Statement.Kind) in Statement(kind: kind, line: begin.line, column: begin.column) }
        openBlocks.append(keyword)
        defer { openBlocks.removeLast() }
        switch keyword {
        case "if": return make(try parseIf())
        case "for": return make(try parseFor())
        case "set": return make(try parseSet())
        case "macro": return make(try parseMacro())
        case "call": return make(try parseCallBlock())
        case "filter": return make(try parseFilterBlock())
        case "with": return make(try parseWith())
        case "generation":
            _ = advance()
            return make(.group(try parseStatements(["endgeneration"], dropNeedle: true)))
        case "break", "continue":
            let token = advance()
            guard loopDepth > 0 else { throw fail("'\(keyword)' outside of a loop", token) }
            return make(keyword == "break" ? .breakLoop : .continueLoop)
        case "extends", "include", "import", "from", "block", "autoescape", "do":
            throw TemplateError(.unsupported, "the '\(keyword)' tag is not supported in chat templates",
                                line: begin.line, column: begin.column)
        default:
            throw fail("Encountered unknown tag '\(keyword)'.")
        }
    }

    private mutating func parseIf() throws -> Statement.Kind {
        _ = advance()
        var branches: [(test: Expression, body: [Statement])] = []
        var elseBody: [Statement] = []
        while true {
            let test = try parseTuple(withConditional: false)
            let body = try parseStatements(["elif", "else", "endif"])
            branches.append((test, body))
            let token = advance()
            if isName("elif", token) { continue }
            if isName("else", token) { elseBody = try parseStatements(["endif"], dropNeedle: true) }
            break
        }
        return .ifChain(branches: branches, elseBody: elseBody)
    }

    private mutating func parseFor() throws -> Statement.Kind {
        _ = advance()
        let target = try parseAssignTarget(extraEndRules: ["in"])
        guard skipName("in") else { throw fail("expected token 'in', got '\(describe(current))'") }
        let iterable = try parseTuple(withConditional: false, extraEndRules: ["recursive"])
        var filter: Expression?
        if skipName("if") { filter = try parseExpression() }
        if isName("recursive") {
            throw TemplateError(.unsupported, "recursive loops are not supported", line: current.line, column: current.column)
        }
        loopDepth += 1
        let body = try parseStatements(["endfor", "else"])
        loopDepth -= 1
        var elseBody: [Statement] = []
        if isName("else", advance()) { elseBody = try parseStatements(["endfor"], dropNeedle: true) }
        return .forLoop(target: target, iterable: iterable, filter: filter, body: body, elseBody: elseBody)
    }

    private mutating func parseSet() throws -> Statement.Kind {
        _ = advance()
        let target = try parseAssignTarget(withNamespace: true)
        if skipOp("=") {
            return .set(target: target, value: try parseTuple())
        }
        guard case .name(let name) = target else { throw fail("expected token '=', got '\(describe(current))'") }
        let filters = try parseFilterChain()
        let body = try parseStatements(["endset"], dropNeedle: true)
        return .setBlock(name: name, filters: filters, body: body)
    }

    private mutating func parseSignature() throws -> [(name: String, defaultValue: Expression?)] {
        try expectOp("(")
        var parameters: [(name: String, defaultValue: Expression?)] = []
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            let name = try expectName()
            if skipOp("=") {
                parameters.append((name, try parseExpression()))
            } else if parameters.contains(where: { $0.defaultValue != nil }) {
                throw fail("non-default argument follows default argument")
            } else {
                parameters.append((name, nil))
            }
        }
        _ = advance()
        return parameters
    }

    private mutating func parseMacro() throws -> Statement.Kind {
        _ = advance()
        let name = try expectName()
        let parameters = try parseSignature()
        let saved = loopDepth
        loopDepth = 0
        defer { loopDepth = saved }
        let body = try parseStatements(["endmacro"], dropNeedle: true)
        return .macro(Macro(name: name, parameters: parameters, body: body, caller: []))
    }

    private mutating func parseCallBlock() throws -> Statement.Kind {
        _ = advance()
        let parameters = isOp("(") ? try parseSignature() : []
        let call = try parseExpression()
        guard case .call = call else { throw fail("expected call") }
        let body = try parseStatements(["endcall"], dropNeedle: true)
        return .callBlock(call: call, caller: Macro(name: "caller", parameters: parameters, body: body, caller: []))
    }

    private mutating func parseFilterBlock() throws -> Statement.Kind {
        _ = advance()
        let filters = try parseFilterChain(startInline: true)
        let body = try parseStatements(["endfilter"], dropNeedle: true)
        return .filterBlock(filters: filters, body: body)
    }

    private mutating func parseWith() throws -> Statement.Kind {
        _ = advance()
        var assignments: [(AssignTarget, Expression)] = []
        while true {
            if case .blockEnd = current.kind { break }
            if !assignments.isEmpty { try expectOp(",") }
            let target = try parseAssignTarget()
            try expectOp("=")
            assignments.append((target, try parseExpression()))
        }
        let body = try parseStatements(["endwith"], dropNeedle: true)
        return .with(assignments: assignments, body: body)
    }

    private mutating func parseAssignTarget(withNamespace: Bool = false, extraEndRules: [String] = []) throws -> AssignTarget {
        if withNamespace, case .name(let ns) = current.kind, isOp(".", next) {
            _ = advance()
            _ = advance()
            return .namespaceAttribute(ns, try expectName())
        }
        // parse_tuple(simplified=True): names separated by commas, with optional parentheses.
        var targets: [AssignTarget] = []
        var isTuple = false
        while true {
            if !targets.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEndRules) { break }
            targets.append(try parseTargetPrimary())
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple, let only = targets.first { return only }
        if targets.isEmpty { throw fail("Expected an expression, got '\(describe(current))'") }
        return .tuple(targets)
    }

    private mutating func parseTargetPrimary() throws -> AssignTarget {
        let token = current
        if case .name(let n) = token.kind {
            _ = advance()
            if ["true", "false", "none", "True", "False", "None"].contains(n) {
                throw fail("Can't assign to '\(n)'", token)
            }
            return .name(n)
        }
        if skipOp("(") {
            let inner = try parseAssignTarget()
            try expectOp(")")
            return inner
        }
        throw fail("can't assign to '\(describe(token))'", token)
    }

    private func isTupleEnd(_ extraEndRules: [String]) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .op(")"): return true
        case .name(let n): return extraEndRules.contains(n)
        default: return false
        }
    }

    // MARK: Expressions

    private mutating func parseTuple(withConditional: Bool = true, extraEndRules: [String] = [],
                                     explicitParentheses: Bool = false) throws -> Expression {
        var items: [Expression] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEndRules) { break }
            items.append(withConditional ? try parseExpression() : try parseOr())
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let only = items.first { return only }
            if !explicitParentheses { throw fail("Expected an expression, got '\(describe(current))'") }
        }
        return .tuple(items)
    }

    private mutating func parseExpression() throws -> Expression {
        try enter()
        defer { nesting -= 1 }
        var expr = try parseOr()
        let saved = nesting
        defer { nesting = saved }
        while skipName("if") {
            try enter()
            let test = try parseOr()
            let otherwise: Expression? = skipName("else") ? try parseExpression() : nil
            expr = .conditional(test: test, then: expr, otherwise: otherwise)
        }
        return expr
    }

    private mutating func parseOr() throws -> Expression {
        var left = try parseAnd()
        let saved = nesting
        defer { nesting = saved }
        while skipName("or") {
            try enter()
            left = .binary("or", left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws -> Expression {
        var left = try parseNot()
        let saved = nesting
        defer { nesting = saved }
        while skipName("and") {
            try enter()
            left = .binary("and", left, try parseNot())
        }
        return left
    }

    private mutating func parseNot() throws -> Expression {
        if skipName("not") {
            try enter()
            defer { nesting -= 1 }
            return .unary("not", try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expression {
        let left = try parseMath1()
        var ops: [(op: String, operand: Expression)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                _ = advance()
                ops.append((o, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not"), isName("in", next) {
                _ = advance()
                _ = advance()
                ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? left : .compare(left, ops)
    }

    private mutating func parseMath1() throws -> Expression {
        var left = try parseConcat()
        let saved = nesting
        defer { nesting = saved }
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            try enter()
            _ = advance()
            left = .binary(o, left, try parseConcat())
        }
        return left
    }

    private mutating func parseConcat() throws -> Expression {
        var left = try parseMath2()
        let saved = nesting
        defer { nesting = saved }
        while skipOp("~") {
            try enter()
            left = .binary("~", left, try parseMath2())
        }
        return left
    }

    private mutating func parseMath2() throws -> Expression {
        var left = try parsePow()
        let saved = nesting
        defer { nesting = saved }
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            try enter()
            _ = advance()
            left = .binary(o, left, try parsePow())
        }
        return left
    }

    private mutating func parsePow() throws -> Expression {
        var left = try parseUnary()
        let saved = nesting
        defer { nesting = saved }
        while skipOp("**") {
            try enter()
            left = .binary("**", left, try parseUnary())
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> Expression {
        try enter()
        defer { nesting -= 1 }
        var node: Expression
        if skipOp("-") {
            node = .unary("-", try parseUnary(withFilter: false))
        } else if skipOp("+") {
            node = .unary("+", try parseUnary(withFilter: false))
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    private mutating func parsePrimary() throws -> Expression {
        let token = current
        switch token.kind {
        case .name(let n):
            _ = advance()
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .string(var s):
            _ = advance()
            while case .string(let more) = current.kind {
                s += more
                _ = advance()
            }
            return .literal(.string(s))
        case .integer(let i):
            _ = advance()
            return .literal(.int(i))
        case .float(let d):
            _ = advance()
            return .literal(.double(d))
        case .op("("):
            _ = advance()
            let expr = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return expr
        case .op("["):
            _ = advance()
            var items: [Expression] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            _ = advance()
            return .list(items)
        case .op("{"):
            _ = advance()
            var items: [(key: Expression, value: Expression)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                items.append((key, try parseExpression()))
            }
            _ = advance()
            return .dict(items)
        default:
            throw fail("unexpected '\(describe(token))'")
        }
    }

    private mutating func parsePostfix(_ start: Expression) throws -> Expression {
        var node = start
        let saved = nesting
        defer { nesting = saved }
        while true {
            try enter()
            if skipOp(".") {
                let token = advance()
                switch token.kind {
                case .name(let n): node = .attribute(node, n)
                case .integer(let i): node = .item(node, .literal(.int(i)))
                default: throw fail("expected name or number", token)
                }
            } else if skipOp("[") {
                var subscripts: [Expression] = []
                while !isOp("]") {
                    if !subscripts.isEmpty { try expectOp(",") }
                    subscripts.append(try parseSubscribed())
                }
                _ = advance()
                guard !subscripts.isEmpty else { throw fail("expected subscript expression") }
                node = .item(node, subscripts.count == 1 ? subscripts[0] : .tuple(subscripts))
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscribed() throws -> Expression {
        var parts: [Expression?] = []
        if skipOp(":") {
            parts = [nil]
        } else {
            let expr = try parseExpression()
            guard skipOp(":") else { return expr }
            parts = [expr]
        }
        // stop
        if isOp("]") || isOp(",") || isOp(":") { parts.append(nil) } else { parts.append(try parseExpression()) }
        if skipOp(":") {
            if isOp("]") || isOp(",") { parts.append(nil) } else { parts.append(try parseExpression()) }
        } else {
            parts.append(nil)
        }
        return .slice(start: parts[0], stop: parts[1], step: parts[2])
    }

    private mutating func parseCallArguments() throws -> Arguments {
        let open = current
        try expectOp("(")
        var args = Arguments()
        var requireComma = false
        while !isOp(")") {
            if requireComma {
                try expectOp(",")
                if isOp(")") { break }
            }
            if isOp("*") || isOp("**") {
                throw TemplateError(.unsupported, "*args and **kwargs in calls are not supported",
                                    line: current.line, column: current.column)
            }
            if case .name(let n) = current.kind, isOp("=", next) {
                _ = advance()
                _ = advance()
                args.keyword.append((n, try parseExpression()))
            } else {
                guard args.keyword.isEmpty else { throw fail("invalid syntax for function call expression", open) }
                args.positional.append(try parseExpression())
            }
            requireComma = true
        }
        _ = advance()
        return args
    }

    private mutating func parseFilterName() throws -> String {
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        return name
    }

    /// `|a|b(x)` as a list of filter calls (for `{% filter %}` and `{% set x | f %}`).
    private mutating func parseFilterChain(startInline: Bool = false) throws -> [FilterCall] {
        var filters: [FilterCall] = []
        var inline = startInline
        while inline || isOp("|") {
            if !inline { _ = advance() }
            inline = false
            let token = current
            let name = try parseFilterName()
            let args = isOp("(") ? try parseCallArguments() : Arguments()
            filters.append(FilterCall(name: name, arguments: args, line: token.line, column: token.column))
        }
        return filters
    }

    private mutating func parseFilterExpression(_ start: Expression) throws -> Expression {
        var node = start
        let saved = nesting
        defer { nesting = saved }
        while true {
            try enter()
            if isOp("|") {
                for filter in try parseFilterChain() {
                    try enter()
                    node = .filter(node, filter)
                }
            } else if isName("is") {
                _ = advance()
                let negated = skipName("not")
                let name = try parseFilterName()
                var args = Arguments()
                if isOp("(") {
                    args = try parseCallArguments()
                } else if testArgumentFollows() {
                    if isName("is") { throw fail("You cannot chain multiple tests with is") }
                    args.positional = [try parsePostfix(try parsePrimary())]
                }
                node = .test(node, name: name, args, negated: negated)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private func testArgumentFollows() -> Bool {
        switch current.kind {
        case .name(let n): return !["else", "or", "and"].contains(n)
        case .string, .integer, .float, .op("("), .op("["), .op("{"): return true
        default: return false
        }
    }
}
