/// Everything that can go wrong compiling or rendering a template. Positions are 1-based; runtime
/// errors carry the position of the statement or output tag that was running.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The template does not parse (jinja2's `TemplateSyntaxError`).
        case syntax
        /// An undefined value was used where jinja2 raises `UndefinedError`.
        case undefined
        /// An operation on the wrong type (Python's `TypeError`/`ValueError` inside jinja2).
        case type
        /// The template called `raise_exception(message)`; `message` is the template's own text.
        case raised
        /// Something the sandbox forbids (mutating methods, underscore attributes).
        case security
        /// Valid Jinja outside the subset this interpreter implements (`include`, `extends`...).
        case unsupported
        /// There is no template to render (a tokenizer without `chat_template`).
        case missingTemplate
    }

    public var kind: Kind
    public var message: String
    public var line: Int
    public var column: Int

    public init(_ kind: Kind, _ message: String, line: Int = 0, column: Int = 0) {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
    }

    public var description: String {
        line > 0 ? "\(message) (template line \(line), column \(column))" : message
    }

    func at(line: Int, column: Int) -> TemplateError {
        guard self.line == 0 else { return self }
        var copy = self
        copy.line = line
        copy.column = column
        return copy
    }
}
