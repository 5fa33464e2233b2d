// Which top-level names start out undefined, following jinja2's symbol analysis
// (jinja2/idtracking.py). jinja2 compiles each top-level name to a local variable: if the first
// thing the template does with the name is a load, the local starts as the context's value; if it
// is a store, it starts undefined, and a macro or loop body that reads it before the store sees
// undefined rather than the context's value. A name first stored inside an `if` starts from the
// context.

struct SymbolTable {
    /// Name → true when the local starts from the context (load first), false when undefined.
    var startsResolved: [String: Bool] = [:]
    var stores: Set<String> = []

    mutating func load(_ name: String) {
        if startsResolved[name] == nil { startsResolved[name] = true }
    }

    mutating func store(_ name: String) {
        stores.insert(name)
        if startsResolved[name] == nil { startsResolved[name] = false }
    }

    /// jinja2's `branch_update`: a name first stored inside any branch starts from the context.
    mutating func merge(branches: [SymbolTable]) {
        var newStores: Set<String> = []
        for branch in branches { newStores.formUnion(branch.stores.subtracting(stores)) }
        for branch in branches {
            startsResolved.merge(branch.startsResolved) { _, later in later }
            stores.formUnion(branch.stores)
        }
        for name in newStores { startsResolved[name] = true }
    }

    /// Top-level names whose local starts undefined.
    static func rootNamesStartingUndefined(_ statements: [Statement]) -> Set<String> {
        var table = SymbolTable()
        table.visit(statements)
        return Set(table.startsResolved.filter { !$0.value }.keys)
    }

    private mutating func visit(_ statements: [Statement]) {
        for statement in statements { visit(statement.kind) }
    }

    private mutating func visit(_ kind: Statement.Kind) {
        switch kind {
        case .text, .breakLoop, .continueLoop: break
        case .output(let e): visit(e)
        case .ifChain(let branches, let elseBody): visitIf(branches[...], elseBody: elseBody)
        case .forLoop(_, let iterable, _, _, _): visit(iterable)
        case .set(let target, let value):
            visit(value)
            visit(target)
        case .setBlock(let name, _, _): store(name)
        case .macro(let m): store(m.name)
        case .callBlock(let call, _): visit(call)
        case .filterBlock(let filters, _): for f in filters { visit(f.arguments) }
        case .with(let assignments, _): for (_, e) in assignments { visit(e) }
        case .group: break
        }
    }

    /// `branches` is one If node and its flat list of elif nodes (each with an empty else).
    private mutating func visitIf(_ branches: ArraySlice<(test: Expression, body: [Statement])>, elseBody: [Statement]) {
        guard let first = branches.first else { return }
        visit(first.test)
        var body = self
        body.visit(first.body)
        var elifs = self
        var index = branches.startIndex + 1
        while index < branches.endIndex {
            elifs.visitIf(branches[index...index], elseBody: [])
            index += 1
        }
        var otherwise = self
        otherwise.visit(elseBody)
        merge(branches: [body, elifs, otherwise])
    }

    private mutating func visit(_ target: AssignTarget) {
        switch target {
        case .name(let n): store(n)
        case .tuple(let targets): for t in targets { visit(t) }
        case .namespaceAttribute(let ns, _): load(ns)
        }
    }

    private mutating func visit(_ args: Arguments) {
        for e in args.positional { visit(e) }
        for k in args.keyword { visit(k.value) }
    }

    private mutating func visit(_ expr: Expression) {
        switch expr {
        case .literal: break
        case .name(let n): load(n)
        case .list(let items), .tuple(let items): for e in items { visit(e) }
        case .dict(let pairs): for p in pairs { visit(p.key); visit(p.value) }
        case .attribute(let base, _): visit(base)
        case .item(let base, let index): visit(base); visit(index)
        case .slice(let a, let b, let c): for e in [a, b, c] { if let e { visit(e) } }
        case .call(let callee, let args): visit(callee); visit(args)
        case .filter(let base, let filter): visit(base); visit(filter.arguments)
        case .test(let base, _, let args, _): visit(base); visit(args)
        case .unary(_, let e): visit(e)
        case .binary(_, let a, let b): visit(a); visit(b)
        case .compare(let first, let ops): visit(first); for o in ops { visit(o.operand) }
        case .conditional(let test, let then, let otherwise):
            visit(test)
            visit(then)
            if let otherwise { visit(otherwise) }
        }
    }
}
