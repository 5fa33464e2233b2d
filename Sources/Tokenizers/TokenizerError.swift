/// Why a tokenizer could not be loaded. Every case names where in which file the problem is,
/// so a server can refuse a bad model folder with a message instead of crashing.
public enum TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file does not exist or cannot be read.
    case fileNotReadable(path: String)
    /// The file is not valid JSON.
    case invalidJSON(file: String, message: String)
    /// A required field is absent (`path` is a JSON path such as `model.vocab`).
    case missingField(path: String)
    /// A field holds the wrong kind of value.
    case wrongType(path: String, expected: String)
    /// A `"type"` this implementation does not know.
    case unsupportedType(path: String, type: String)
    /// A field's value is not acceptable (bad regex, bad merge line, out-of-range id...).
    case invalidValue(path: String, problem: String)
    /// A merge refers to a token that is not in the vocabulary.
    case mergeTokenNotInVocabulary(index: Int, token: String)

    public var description: String {
        switch self {
        case .fileNotReadable(let path):
            return "cannot read \(path)"
        case .invalidJSON(let file, let message):
            return "\(file) is not valid JSON: \(message)"
        case .missingField(let path):
            return "tokenizer.json: missing field '\(path)'"
        case .wrongType(let path, let expected):
            return "tokenizer.json: '\(path)' should be \(expected)"
        case .unsupportedType(let path, let type):
            return "tokenizer.json: unsupported \(path) type '\(type)'"
        case .invalidValue(let path, let problem):
            return "tokenizer.json: '\(path)': \(problem)"
        case .mergeTokenNotInVocabulary(let index, let token):
            return "tokenizer.json: model.merges[\(index)] refers to '\(token)', which is not in model.vocab"
        }
    }
}

/// Typed accessors that turn a missing or mistyped field into a `TokenizerError` naming its path.
struct JSONReader {
    let value: JSONValue
    let path: String

    init(_ value: JSONValue, path: String) {
        self.value = value
        self.path = path
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The member `key`, or nil when absent or JSON null.
    func optional(_ key: String) -> JSONReader? {
        guard let v = value[key], !v.isNull else { return nil }
        return JSONReader(v, path: child(key))
    }

    func required(_ key: String) throws(TokenizerError) -> JSONReader {
        guard let r = optional(key) else { throw .missingField(path: child(key)) }
        return r
    }

    func string() throws(TokenizerError) -> String {
        guard let s = value.string else { throw .wrongType(path: path, expected: "a string") }
        return s
    }

    func int() throws(TokenizerError) -> Int {
        guard let n = value.int else { throw .wrongType(path: path, expected: "an integer") }
        return n
    }

    func bool() throws(TokenizerError) -> Bool {
        guard let b = value.bool else { throw .wrongType(path: path, expected: "true or false") }
        return b
    }

    func array() throws(TokenizerError) -> [JSONReader] {
        guard let a = value.array else { throw .wrongType(path: path, expected: "an array") }
        return a.enumerated().map { JSONReader($1, path: "\(path)[\($0)]") }
    }

    func members() throws(TokenizerError) -> [(key: String, value: JSONReader)] {
        guard let m = value.members else { throw .wrongType(path: path, expected: "an object") }
        return m.map { ($0.key, JSONReader($0.value, path: child($0.key))) }
    }

    func string(_ key: String, default def: String) throws(TokenizerError) -> String {
        try optional(key)?.string() ?? def
    }

    func bool(_ key: String, default def: Bool) throws(TokenizerError) -> Bool {
        try optional(key)?.bool() ?? def
    }

    func int(_ key: String, default def: Int) throws(TokenizerError) -> Int {
        try optional(key)?.int() ?? def
    }

    /// The `"type"` member, decoded into a factory enum whose raw values are the JSON strings.
    func type<T: RawRepresentable>(_: T.Type) throws(TokenizerError) -> T where T.RawValue == String {
        let name = try required("type").string()
        guard let t = T(rawValue: name) else { throw .unsupportedType(path: path, type: name) }
        return t
    }
}
