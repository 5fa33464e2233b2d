/// Why a delta, a variant or a plugin was refused. Each case carries what was wrong and a hint;
/// the server turns them into OpenAI-shaped 400/404 errors, the plugin edge into a code and text.
public enum TransferError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file is not a readable Graft delta (truncated, not safetensors, wrong format tag).
    case unreadable(path: String, String)
    /// A tensor of the delta does not fit the target model (unknown name, shape, dtype).
    case badEntry(tensor: String, String)
    /// The delta was made for another model.
    case fingerprintMismatch(expected: String, found: String)
    /// A value is NaN/Inf or a norm exceeds the configured bound.
    case outOfBounds(tensor: String, String)
    /// A delta path leaves the delta directory, or does not exist in it.
    case badPath(String, String)
    /// A plugin could not be loaded or failed.
    case plugin(name: String, String)

    public var description: String {
        switch self {
        case .unreadable(let path, let why): "delta '\(path)' is unreadable: \(why)"
        case .badEntry(let tensor, let why): "delta tensor '\(tensor)': \(why)"
        case .fingerprintMismatch(let expected, let found):
            "the delta was made for another model (its fingerprint is \(found), this model's \(expected)) (hint: wrong base model?)"
        case .outOfBounds(let tensor, let why): "delta tensor '\(tensor)': \(why) (hint: raise the variant's validation bounds if this is intended)"
        case .badPath(let path, let why): "delta path '\(path)': \(why)"
        case .plugin(let name, let why): "plugin '\(name)': \(why)"
        }
    }

    /// The case's name (`graft delta build --status-lines` tells the server which it was).
    public var kind: String {
        switch self {
        case .unreadable: "unreadable"
        case .badEntry: "badEntry"
        case .fingerprintMismatch: "fingerprintMismatch"
        case .outOfBounds: "outOfBounds"
        case .badPath: "badPath"
        case .plugin: "plugin"
        }
    }
}
