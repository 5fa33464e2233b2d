// Bounds that keep a hostile or broken template from taking the process down. jinja2 leans on
// Python's recursion limit and MemoryError; a Swift stack overflow or failed allocation would
// kill the server instead, so these turn the same situations into TemplateErrors.

enum Limits {
    /// Nesting of brackets, operators and blocks in the source (Python's recursion limit stops
    /// jinja2's parser at a similar depth).
    static let nesting = 200
    /// Nested macro calls (jinja2: RecursionError).
    static let macroDepth = 100
    /// Nesting of values printed or serialized (repr and json.dumps: RecursionError).
    static let valueDepth = 200
    /// Longest string or list one operation may build (Python: MemoryError).
    static let resultLength = 64 << 20

    static func checkLength(_ count: Int, _ what: String = "result") throws {
        guard count <= resultLength else {
            throw TemplateError(.type, "MemoryError: \(what) of \(count) elements is over the \(resultLength) limit")
        }
    }
}
