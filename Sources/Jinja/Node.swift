// The parsed template: statements and expressions, as jinja2's `nodes` module has them.

struct Statement: Sendable {
    indirect enum Kind: Sendable {
        case text(String)
        case output(Expression)
        case ifChain(branches: [(test: Expression, body: [Statement])], elseBody: [Statement])
        case forLoop(target: AssignTarget, iterable: Expression, filter: Expression?,
                     body: [Statement], elseBody: [Statement])
        case set(target: AssignTarget, value: Expression)
        /// `{% set x %}…{% endset %}`, with optional filters applied to the captured text.
        case setBlock(name: String, filters: [FilterCall], body: [Statement])
        case macro(Macro)
        /// `{% call macro(args) %}body{% endcall %}`: the body becomes the macro's `caller`.
        case callBlock(call: Expression, caller: Macro)
        case filterBlock(filters: [FilterCall], body: [Statement])
        case with(assignments: [(AssignTarget, Expression)], body: [Statement])
        /// A body rendered as is: transformers' `{% generation %}` only tracks offsets.
        case group([Statement])
        case breakLoop
        case continueLoop
    }

    let kind: Kind
    let line: Int
    let column: Int
}

indirect enum Expression: Sendable {
    case literal(Value)
    case name(String)
    case list([Expression])
    case tuple([Expression])
    case dict([(key: Expression, value: Expression)])
    case attribute(Expression, String)
    case item(Expression, Expression)
    case slice(start: Expression?, stop: Expression?, step: Expression?)
    case call(Expression, Arguments)
    case filter(Expression, FilterCall)
    case test(Expression, name: String, Arguments, negated: Bool)
    case unary(String, Expression)
    case binary(String, Expression, Expression)
    case compare(Expression, [(op: String, operand: Expression)])
    case conditional(test: Expression, then: Expression, otherwise: Expression?)
}

struct Arguments: Sendable {
    var positional: [Expression] = []
    var keyword: [(name: String, value: Expression)] = []
}

struct FilterCall: Sendable {
    let name: String
    let arguments: Arguments
    let line: Int
    let column: Int
}

indirect enum AssignTarget: Sendable {
    case name(String)
    case tuple([AssignTarget])
    /// `ns.attr` in `{% set ns.attr = … %}`.
    case namespaceAttribute(String, String)
}
