// Tree-walking evaluation with jinja2's scoping: `for` bodies and macros get a new frame per
// iteration or call (so `set` inside them does not leak out, which is why templates use
// `namespace`), while `if` shares its enclosing frame.

final class Frame {
    var variables: [String: Value] = [:]
    let parent: Frame?

    init(parent: Frame?) {
        self.parent = parent
    }

    func lookup(_ name: String) -> Value? {
        var frame: Frame? = self
        while let f = frame {
            if let v = f.variables[name] { return v }
            frame = f.parent
        }
        return nil
    }
}

enum Flow {
    case normal, breakLoop, continueLoop
}

/// Call arguments after evaluation.
struct CallArguments {
    var positional: [Value] = []
    var keyword: [(name: String, value: Value)] = []

    /// The argument at `index`, or the keyword `name`.
    func value(_ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return keyword.first { $0.name == name }?.value
    }

    func keywordValue(_ name: String) -> Value? { keyword.first { $0.name == name }?.value }
}

final class Interpreter {
    let root: Frame
    /// Attribute tables of the `namespace()` objects created during this render.
    var namespaces: [OrderedObject] = []
    /// Frames macros close over, by `Macro.closure`.
    var closures: [Frame] = []
    var output = ""
    private var depth = 0

    init(context: [String: Value]) {
        let globals = Frame(parent: nil)
        for name in ["range", "namespace", "raise_exception", "strftime_now", "dict"] {
            globals.variables[name] = .callable(.builtin(name))
        }
        root = Frame(parent: globals)
        root.variables = context
    }

    func render(_ statements: [Statement]) throws -> String {
        _ = try execute(statements, in: root)
        return output
    }

    // MARK: Statements

    func execute(_ statements: [Statement], in frame: Frame) throws -> Flow {
        for statement in statements {
            let flow: Flow
            do {
                flow = try execute(statement, in: frame)
            } catch let error as TemplateError {
                throw error.at(line: statement.line, column: statement.column)
            }
            if flow != .normal { return flow }
        }
        return .normal
    }

    /// Render statements into a string of their own (block `set`, macros, `filter` blocks).
    func capture(_ statements: [Statement], in frame: Frame) throws -> String {
        let saved = output
        output = ""
        defer { output = saved }
        _ = try execute(statements, in: frame)
        return output
    }

    private func execute(_ statement: Statement, in frame: Frame) throws -> Flow {
        switch statement.kind {
        case .text(let s):
            output += s
        case .output(let expr):
            output += try evaluate(expr, in: frame).pythonString
        case .ifChain(let branches, let elseBody):
            for branch in branches where try evaluate(branch.test, in: frame).isTruthy {
                return try execute(branch.body, in: frame)
            }
            return try execute(elseBody, in: frame)
        case .forLoop(let target, let iterable, let filter, let body, let elseBody):
            return try executeFor(target: target, iterable: iterable, filter: filter, body: body,
                                  elseBody: elseBody, in: frame)
        case .set(let target, let value):
            try assign(target, try evaluate(value, in: frame), in: frame)
        case .setBlock(let name, let filters, let body):
            var value = Value.string(try capture(body, in: Frame(parent: frame)))
            for filter in filters { value = try applyFilter(filter, to: value, in: frame) }
            frame.variables[name] = value
        case .macro(var macro):
            macro.closure = closures.count
            closures.append(frame)
            frame.variables[macro.name] = .callable(.macro(macro))
        case .callBlock(let call, var caller):
            guard case .call(let callee, let args) = call else { break }
            caller.closure = closures.count
            closures.append(frame)
            let function = try evaluate(callee, in: frame)
            guard case .callable(.macro(var macro)) = function else {
                throw TemplateError(.type, "{% call %} needs a macro, got \(function.typeName)")
            }
            macro.caller = [caller]
            output += try callMacro(macro, try evaluateArguments(args, in: frame)).pythonString
        case .filterBlock(let filters, let body):
            var value = Value.string(try capture(body, in: Frame(parent: frame)))
            for filter in filters { value = try applyFilter(filter, to: value, in: frame) }
            output += value.pythonString
        case .with(let assignments, let body):
            let inner = Frame(parent: frame)
            for (target, expr) in assignments { try assign(target, try evaluate(expr, in: frame), in: inner) }
            return try execute(body, in: inner)
        case .group(let body):
            return try execute(body, in: frame)
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func executeFor(target: AssignTarget, iterable: Expression, filter: Expression?,
                            body: [Statement], elseBody: [Statement], in frame: Frame) throws -> Flow {
        var items = try iterate(try evaluate(iterable, in: frame))
        if let filter {
            items = try items.filter { item in
                let scratch = Frame(parent: frame)
                try assign(target, item, in: scratch)
                return try evaluate(filter, in: scratch).isTruthy
            }
        }
        // jinja2 clears its "no iteration" flag at the end of the body, so iterations that end in
        // `continue` or `break` leave it set and the else block still runs. The else block has a
        // frame of its own.
        var completedAnIteration = false
        let count = items.count
        for (i, item) in items.enumerated() {
            let iteration = Frame(parent: frame)
            var loop = OrderedObject()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(count - i)
            loop["revindex0"] = .int(count - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == count - 1)
            loop["length"] = .int(count)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined(hint: "there is no previous item")
            loop["nextitem"] = i + 1 < count ? items[i + 1] : .undefined(hint: "there is no next item")
            loop["cycle"] = .callable(.loopCycle(index0: i))
            iteration.variables["loop"] = .object(loop)
            try assign(target, item, in: iteration)
            let flow = try execute(body, in: iteration)
            if flow == .breakLoop { break }
            if flow == .normal { completedAnIteration = true }
        }
        if !completedAnIteration { return try execute(elseBody, in: Frame(parent: frame)) }
        return .normal
    }

    func assign(_ target: AssignTarget, _ value: Value, in frame: Frame) throws {
        switch target {
        case .name(let name):
            frame.variables[name] = value
        case .tuple(let targets):
            let items = try iterate(value)
            guard items.count == targets.count else {
                let problem = items.count > targets.count ? "too many values to unpack" : "not enough values to unpack"
                throw TemplateError(.type, "\(problem) (expected \(targets.count), got \(items.count))")
            }
            for (t, v) in zip(targets, items) { try assign(t, v, in: frame) }
        case .namespaceAttribute(let name, let attribute):
            guard case .namespace(let id) = frame.lookup(name) ?? .undefined else {
                throw TemplateError(.type, "Cannot assign attribute on non-namespace object")
            }
            guard !attribute.hasPrefix("_") else {
                throw TemplateError(.security, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(attribute)'. Please rename the attribute.")
            }
            namespaces[id.index][attribute] = value
        }
    }

    // MARK: Expressions

    func evaluate(_ expr: Expression, in frame: Frame) throws -> Value {
        switch expr {
        case .literal(let v):
            return v
        case .name(let name):
            return frame.lookup(name) ?? .undefined(hint: "'\(name)' is undefined")
        case .list(let items):
            return .array(try items.map { try evaluate($0, in: frame) })
        case .tuple(let items):
            return .tuple(try items.map { try evaluate($0, in: frame) })
        case .dict(let pairs):
            var object = OrderedObject()
            for pair in pairs {
                let key = try evaluate(pair.key, in: frame)
                guard case .string(let k) = key else {
                    throw TemplateError(.unsupported, "dict keys must be strings here, got \(key.typeName)")
                }
                object[k] = try evaluate(pair.value, in: frame)
            }
            return .object(object)
        case .attribute(let base, let name):
            return try attribute(name, of: try evaluate(base, in: frame))
        case .item(let base, let index):
            let container = try evaluate(base, in: frame)
            if case .slice(let start, let stop, let step) = index {
                return try slice(container,
                                 start: try start.map { try evaluate($0, in: frame) },
                                 stop: try stop.map { try evaluate($0, in: frame) },
                                 step: try step.map { try evaluate($0, in: frame) })
            }
            return try item(try evaluate(index, in: frame), of: container)
        case .slice:
            throw TemplateError(.syntax, "slice outside of a subscript")
        case .call(let callee, let args):
            let function = try evaluate(callee, in: frame)
            return try call(function, try evaluateArguments(args, in: frame))
        case .filter(let base, let filter):
            return try applyFilter(filter, to: try evaluate(base, in: frame), in: frame)
        case .test(let base, let name, let args, let negated):
            let value = try evaluate(base, in: frame)
            let result = try applyTest(name, to: value, try evaluateArguments(args, in: frame))
            return .bool(result != negated)
        case .unary(let op, let operand):
            let value = try evaluate(operand, in: frame)
            if op == "not" { return .bool(!value.isTruthy) }
            return try unary(op, value)
        case .binary(let op, let lhs, let rhs):
            let left = try evaluate(lhs, in: frame)
            switch op {
            case "and": return left.isTruthy ? try evaluate(rhs, in: frame) : left
            case "or": return left.isTruthy ? left : try evaluate(rhs, in: frame)
            default: return try binary(op, left, try evaluate(rhs, in: frame))
            }
        case .compare(let first, let ops):
            var left = try evaluate(first, in: frame)
            for (op, operandExpr) in ops {
                let right = try evaluate(operandExpr, in: frame)
                guard try compare(op, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let test, let then, let otherwise):
            if try evaluate(test, in: frame).isTruthy { return try evaluate(then, in: frame) }
            return try otherwise.map { try evaluate($0, in: frame) } ?? .undefined(hint: "the inline if-expression evaluated to false and no else section was defined.")
        }
    }

    func evaluateArguments(_ args: Arguments, in frame: Frame) throws -> CallArguments {
        CallArguments(positional: try args.positional.map { try evaluate($0, in: frame) },
                      keyword: try args.keyword.map { ($0.name, try evaluate($0.value, in: frame)) })
    }

    // MARK: Calls

    func call(_ function: Value, _ args: CallArguments) throws -> Value {
        switch function {
        case .undefined(let hint):
            throw TemplateError(.undefined, hint)
        case .callable(.macro(let macro)):
            return try callMacro(macro, args)
        case .callable(.builtin(let name)):
            return try callBuiltin(name, args)
        case .callable(.method(let receiver, let name)):
            return try callMethod(name, on: receiver, args)
        case .callable(.loopCycle(let index0)):
            guard !args.positional.isEmpty else { throw TemplateError(.type, "no items for cycling given") }
            return args.positional[index0 % args.positional.count]
        default:
            throw TemplateError(.type, "'\(function.typeName)' object is not callable")
        }
    }

    func callMacro(_ macro: Macro, _ args: CallArguments) throws -> Value {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Limits.macroDepth else { throw TemplateError(.type, "maximum recursion depth exceeded in macro '\(macro.name)'") }
        let parent = macro.closure.map { closures[$0] } ?? root
        let frame = Frame(parent: parent)
        for (i, parameter) in macro.parameters.enumerated() {
            if i < args.positional.count {
                frame.variables[parameter.name] = args.positional[i]
            } else if let value = args.keywordValue(parameter.name) {
                frame.variables[parameter.name] = value
            } else if let defaultValue = parameter.defaultValue {
                frame.variables[parameter.name] = try evaluate(defaultValue, in: frame)
            } else {
                frame.variables[parameter.name] = .undefined(hint: "parameter '\(parameter.name)' was not provided")
            }
        }
        frame.variables["varargs"] = .tuple(Array(args.positional.dropFirst(macro.parameters.count)))
        let names = Set(macro.parameters.map(\.name))
        frame.variables["kwargs"] = .object(OrderedObject(args.keyword.filter { !names.contains($0.name) }.map { ($0.name, $0.value) }))
        if let caller = macro.caller.first { frame.variables["caller"] = .callable(.macro(caller)) }
        return .string(try capture(macro.body, in: frame))
    }

    private func callBuiltin(_ name: String, _ args: CallArguments) throws -> Value {
        switch name {
        case "raise_exception":
            throw TemplateError(.raised, args.value(0, "message")?.pythonString ?? "")
        case "range":
            let ints = try args.positional.map { v -> Int in
                guard let i = v.integer else {
                    throw TemplateError(.type, "'\(v.typeName)' object cannot be interpreted as an integer")
                }
                return i
            }
            var (start, stop, step) = (0, 0, 1)
            switch ints.count {
            case 1: stop = ints[0]
            case 2: (start, stop) = (ints[0], ints[1])
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw TemplateError(.type, "range expected 1 to 3 arguments, got \(ints.count)")
            }
            guard step != 0 else { throw TemplateError(.type, "range() arg 3 must not be zero") }
            // The sandbox's MAX_RANGE, checked before building anything.
            let span = step > 0 ? Double(stop) - Double(start) : Double(start) - Double(stop)
            guard (span / Double(abs(step))).rounded(.up) <= 100_000 else {
                throw TemplateError(.security, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
            }
            return .array(stride(from: start, to: stop, by: step).map(Value.int))
        case "namespace", "dict":
            var attributes = OrderedObject()
            for value in args.positional {
                guard case .object(let o) = value else {
                    throw TemplateError(.type, "\(name)() positional argument must be a dict, got \(value.typeName)")
                }
                for (k, v) in o.pairs { attributes[k] = v }
            }
            for (k, v) in args.keyword { attributes[k] = v }
            if name == "dict" { return .object(attributes) }
            if let bad = attributes.keys.first(where: { $0.hasPrefix("_") }) {
                throw TemplateError(.security, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(bad)'. Please rename the attribute.")
            }
            namespaces.append(attributes)
            return .namespace(NamespaceID(index: namespaces.count - 1))
        case "strftime_now":
            guard case .string(let format)? = args.value(0, "format") else {
                throw TemplateError(.type, "strftime_now() needs a format string")
            }
            return .string(formatCurrentTime(format))
        default:
            throw TemplateError(.undefined, "'\(name)' is undefined")
        }
    }

    // MARK: Attribute and item access (jinja2's sandboxed `getattr` and `getitem`)

    func attribute(_ name: String, of value: Value) throws -> Value {
        switch value {
        case .undefined(let hint):
            throw TemplateError(.undefined, hint)
        case .namespace(let id):
            return namespaces[id.index][name] ?? .undefined(hint: "'Namespace' has no attribute '\(name)'")
        case .object(let o):
            if Methods.has(name, on: value) { return .callable(.method(value, name)) }
            return o[name] ?? .undefined(hint: "'dict object' has no attribute '\(name)'")
        default:
            if Methods.has(name, on: value) { return .callable(.method(value, name)) }
            return .undefined(hint: "\(objectTypeRepr(value)) has no attribute '\(name)'")
        }
    }

    func item(_ key: Value, of value: Value) throws -> Value {
        switch (value, key) {
        case (.undefined(let hint), _):
            throw TemplateError(.undefined, hint)
        case (.object(let o), .string(let k)):
            if let v = o[k] { return v }
        case (.array(let a), _), (.tuple(let a), _):
            if let i = key.integer {
                let index = i < 0 ? i + a.count : i
                if index >= 0 && index < a.count { return a[index] }
                return .undefined(hint: "\(objectTypeRepr(value)) has no element \(i)")
            }
        case (.string(let s), _):
            if let i = key.integer {
                let scalars = Array(s.unicodeScalars)
                let index = i < 0 ? i + scalars.count : i
                if index >= 0 && index < scalars.count { return .string(String(scalars[index])) }
                return .undefined(hint: "\(objectTypeRepr(value)) has no element \(i)")
            }
        case (.namespace, .string(let k)):
            return try attribute(k, of: value)
        default:
            break
        }
        // jinja2 falls back to the attribute of that name (`d['items']` is the method).
        if case .string(let k) = key, Methods.has(k, on: value) { return .callable(.method(value, k)) }
        let shown = key.pythonString
        return .undefined(hint: "\(objectTypeRepr(value)) has no attribute '\(shown)'")
    }

    func slice(_ value: Value, start: Value?, stop: Value?, step: Value?) throws -> Value {
        func bound(_ v: Value?) throws -> Int? {
            guard let v, !v.isNone else { return nil }
            guard let i = v.integer else {
                throw TemplateError(.type, "slice indices must be integers or None")
            }
            return i
        }
        let (b, e, s) = (try bound(start), try bound(stop), try bound(step))
        switch value {
        case .undefined(let hint):
            throw TemplateError(.undefined, hint)
        case .array(let a):
            return .array(try pythonSlice(count: a.count, b, e, s).map { a[$0] })
        case .tuple(let a):
            return .tuple(try pythonSlice(count: a.count, b, e, s).map { a[$0] })
        case .string(let str):
            let scalars = Array(str.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try pythonSlice(count: scalars.count, b, e, s) { out.append(scalars[i]) }
            return .string(String(out))
        default:
            return .undefined(hint: "\(objectTypeRepr(value)) has no attribute 'slice'")
        }
    }
}

/// jinja2's `object_type_repr`, as undefined-attribute messages print it.
func objectTypeRepr(_ value: Value) -> String {
    switch value {
    case .none: return "None"
    default: return "'\(value.typeName) object'"
    }
}

/// The indices Python's `seq[start:stop:step]` selects.
func pythonSlice(count: Int, _ start: Int?, _ stop: Int?, _ step: Int?) throws -> [Int] {
    let step = step ?? 1
    guard step != 0 else { throw TemplateError(.type, "slice step cannot be zero") }
    func clamp(_ v: Int?, _ defaultValue: Int, low: Int, high: Int) -> Int {
        guard var v else { return defaultValue }
        if v < 0 { v += count }
        return min(max(v, low), high)
    }
    var indices: [Int] = []
    if step > 0 {
        let b = clamp(start, 0, low: 0, high: count)
        let e = clamp(stop, count, low: 0, high: count)
        var i = b
        while i < e { indices.append(i); i += step }
    } else {
        let b = clamp(start, count - 1, low: -1, high: count - 1)
        let e = clamp(stop, -1, low: -1, high: count - 1)
        var i = b
        while i > e { indices.append(i); i += step }
    }
    return indices
}
