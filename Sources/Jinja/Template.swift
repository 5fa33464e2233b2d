/// A compiled Jinja template, rendered as transformers' sandboxed jinja2 environment renders it
/// (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, `tojson`
/// with `ensure_ascii=False`).
///
///     let template = try Template("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
///     let text = try template.render(["messages": [["role": "user", "content": "Hi"]]])
public struct Template: Sendable {
    let statements: [Statement]

    /// Parses `source`; throws a `TemplateError` of kind `.syntax` (with line and column) when it
    /// does not parse, or `.unsupported` for tags outside the subset (`include`, `extends`...).
    public init(_ source: String, options: LexerOptions = LexerOptions()) throws {
        statements = try Parser.parse(source, options: options)
        try Template.checkNames(statements)
    }

    /// Renders with the given top-level variables. Each call starts from a fresh state.
    public func render(_ context: [String: Value]) throws -> String {
        try Interpreter(context: context).render(statements)
    }

    /// jinja2 rejects unknown filters and tests when it compiles, not when it runs.
    private static func checkNames(_ statements: [Statement]) throws {
        for statement in statements {
            do {
                try check(statement.kind)
            } catch let error as TemplateError {
                throw error.at(line: statement.line, column: statement.column)
            }
        }
    }

    private static func check(_ kind: Statement.Kind) throws {
        switch kind {
        case .text, .breakLoop, .continueLoop: break
        case .output(let e): try check(e)
        case .ifChain(let branches, let elseBody):
            for b in branches { try check(b.test); try checkNames(b.body) }
            try checkNames(elseBody)
        case .forLoop(_, let iterable, let filter, let body, let elseBody):
            try check(iterable)
            if let filter { try check(filter) }
            try checkNames(body)
            try checkNames(elseBody)
        case .set(_, let value): try check(value)
        case .setBlock(_, let filters, let body):
            try filters.forEach(check)
            try checkNames(body)
        case .macro(let m):
            for p in m.parameters { if let d = p.defaultValue { try check(d) } }
            try checkNames(m.body)
        case .callBlock(let call, let caller):
            try check(call)
            try checkNames(caller.body)
        case .filterBlock(let filters, let body):
            try filters.forEach(check)
            try checkNames(body)
        case .with(let assignments, let body):
            for (_, e) in assignments { try check(e) }
            try checkNames(body)
        case .group(let body): try checkNames(body)
        }
    }

    private static func check(_ filter: FilterCall) throws {
        guard Filters.names.contains(filter.name) else {
            throw TemplateError(.syntax, "No filter named '\(filter.name)'.", line: filter.line, column: filter.column)
        }
        try check(filter.arguments)
    }

    private static func check(_ args: Arguments) throws {
        try args.positional.forEach(check)
        for k in args.keyword { try check(k.value) }
    }

    private static func check(_ expr: Expression) throws {
        switch expr {
        case .literal, .name: break
        case .list(let items), .tuple(let items): try items.forEach(check)
        case .dict(let pairs): for p in pairs { try check(p.key); try check(p.value) }
        case .attribute(let base, _): try check(base)
        case .item(let base, let index): try check(base); try check(index)
        case .slice(let a, let b, let c): for e in [a, b, c] { if let e { try check(e) } }
        case .call(let callee, let args): try check(callee); try check(args)
        case .filter(let base, let filter): try check(base); try check(filter)
        case .test(let base, let name, let args, _):
            guard Tests.names.contains(name) else { throw TemplateError(.syntax, "No test named '\(name)'.") }
            try check(base)
            try check(args)
        case .unary(_, let e): try check(e)
        case .binary(_, let a, let b): try check(a); try check(b)
        case .compare(let first, let ops): try check(first); for o in ops { try check(o.operand) }
        case .conditional(let test, let then, let otherwise):
            try check(test)
            try check(then)
            if let otherwise { try check(otherwise) }
        }
    }
}
