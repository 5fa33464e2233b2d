/// A compiled Jinja template, rendered as transformers' sandboxed jinja2 environment renders it
/// (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, `tojson`
/// with `ensure_ascii=False`).
///
/// The subset: `{{ }}`, `{% %}`, `{# #}`, `raw`, whitespace control `-`/`+`; `if/elif/else`,
/// `for … in … if … / else` with `loop.*` and `loop.cycle`, tuple unpacking, `break`/`continue`,
/// `set` (names, tuples, `ns.attr`, blocks with filters), `macro` with defaults, `varargs`,
/// `kwargs` and `caller`, `call`, `filter`, `with`, `generation`; every expression form of jinja2
/// except `*args`/`**kwargs` in calls; jinja2's filters and tests that chat templates use (see
/// `Filters.names`, `Tests.names`); Python `str`/`dict`/`list` methods (`Methods`); globals
/// `range`, `namespace`, `dict`, `raise_exception`, `strftime_now`. Not supported: `include`,
/// `extends`, `import`, `block`, recursive loops (they throw `.unsupported`). Integers are 64-bit.
///
///     let template = try Template("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
///     let text = try template.render(["messages": [["role": "user", "content": "Hi"]]])
public struct Template: Sendable {
    let statements: [Statement]
    /// Top-level names jinja2 starts as undefined locals rather than context lookups.
    let rootNamesStartingUndefined: Set<String>

    /// Parses `source`; throws a `TemplateError` of kind `.syntax` (with line and column) when it
    /// does not parse, or `.unsupported` for tags outside the subset (`include`, `extends`...).
    public init(_ source: String, options: LexerOptions = LexerOptions()) throws {
        statements = try Parser.parse(source, options: options)
        try Template.checkNames(statements)
        rootNamesStartingUndefined = SymbolTable.rootNamesStartingUndefined(statements)
    }

    /// Renders with the given top-level variables. Each call starts from a fresh state.
    public func render(_ context: [String: Value]) throws -> String {
        var variables = context
        for name in rootNamesStartingUndefined { variables[name] = .undefined(hint: "'\(name)' is undefined") }
        return try Interpreter(context: variables).render(statements)
    }

    /// jinja2 rejects unknown filters and tests when it compiles, except directly inside an `if`
    /// or a conditional expression (its "soft" frames), where they fail only when reached.
    private static func checkNames(_ statements: [Statement], soft: Bool = false) throws {
        for statement in statements {
            do {
                try check(statement.kind, soft: soft)
            } catch let error as TemplateError {
                throw error.at(line: statement.line, column: statement.column)
            }
        }
    }

    private static func check(_ kind: Statement.Kind, soft: Bool) throws {
        switch kind {
        case .text, .breakLoop, .continueLoop: break
        case .output(let e): try check(e, soft: soft)
        case .ifChain(let branches, let elseBody):
            for b in branches { try check(b.test, soft: true); try checkNames(b.body, soft: true) }
            try checkNames(elseBody, soft: true)
        case .forLoop(_, let iterable, let filter, let body, let elseBody):
            try check(iterable, soft: soft)
            if let filter { try check(filter, soft: false) }
            try checkNames(body)
            try checkNames(elseBody)
        case .set(_, let value): try check(value, soft: soft)
        case .setBlock(_, let filters, let body):
            for f in filters { try check(f, soft: soft) }
            try checkNames(body)
        case .macro(let m):
            for p in m.parameters { if let d = p.defaultValue { try check(d, soft: false) } }
            try checkNames(m.body)
        case .callBlock(let call, let caller):
            try check(call, soft: soft)
            try checkNames(caller.body)
        case .filterBlock(let filters, let body):
            for f in filters { try check(f, soft: soft) }
            try checkNames(body)
        case .with(let assignments, let body):
            for (_, e) in assignments { try check(e, soft: soft) }
            try checkNames(body)
        case .group(let body): try checkNames(body)
        }
    }

    private static func check(_ filter: FilterCall, soft: Bool) throws {
        guard soft || Filters.names.contains(filter.name) else {
            throw TemplateError(.syntax, "No filter named '\(filter.name)'.", line: filter.line, column: filter.column)
        }
        try check(filter.arguments, soft: soft)
    }

    private static func check(_ args: Arguments, soft: Bool) throws {
        for e in args.positional { try check(e, soft: soft) }
        for k in args.keyword { try check(k.value, soft: soft) }
    }

    private static func check(_ expr: Expression, soft: Bool) throws {
        switch expr {
        case .literal, .name: break
        case .list(let items), .tuple(let items): for e in items { try check(e, soft: soft) }
        case .dict(let pairs): for p in pairs { try check(p.key, soft: soft); try check(p.value, soft: soft) }
        case .attribute(let base, _): try check(base, soft: soft)
        case .item(let base, let index): try check(base, soft: soft); try check(index, soft: soft)
        case .slice(let a, let b, let c): for e in [a, b, c] { if let e { try check(e, soft: soft) } }
        case .call(let callee, let args): try check(callee, soft: soft); try check(args, soft: soft)
        case .filter(let base, let filter): try check(base, soft: soft); try check(filter, soft: soft)
        case .test(let base, let name, let args, _):
            guard soft || Tests.names.contains(name) else { throw TemplateError(.syntax, "No test named '\(name)'.") }
            try check(base, soft: soft)
            try check(args, soft: soft)
        case .unary(_, let e): try check(e, soft: soft)
        case .binary(_, let a, let b): try check(a, soft: soft); try check(b, soft: soft)
        case .compare(let first, let ops):
            try check(first, soft: soft)
            for o in ops { try check(o.operand, soft: soft) }
        case .conditional(let test, let then, let otherwise):
            try check(test, soft: true)
            try check(then, soft: true)
            if let otherwise { try check(otherwise, soft: true) }
        }
    }
}
