import Foundation

/// Errors of the evaluation layer; each carries what to do about it.
public enum EvaluationError: Error, CustomStringConvertible, Sendable {
    case missingTool(String, hint: String)
    case data(String)
    case checksum(file: String, expected: String, actual: String)
    case server(String)
    /// The response names another variant than the one asked for (quarantine): never a result.
    case wrongVariant(asked: String, servedBy: String)
    case sandbox(String)
    case usage(String)

    public var description: String {
        switch self {
        case let .missingTool(tool, hint): return "'\(tool)' is not available (hint: \(hint))"
        case let .data(m): return "data: \(m)"
        case let .checksum(file, expected, actual):
            return "checksum mismatch for \(file): expected sha256 \(expected), got \(actual) (hint: a different release of the file; delete it and run `graft data` again)"
        case let .server(m): return "server: \(m)"
        case let .wrongVariant(asked, served):
            return "asked for variant '\(asked)' but the response was served by '\(served)' (quarantined?); the item is not scored"
        case let .sandbox(m): return "sandbox: \(m)"
        case let .usage(m): return m
        }
    }
}
