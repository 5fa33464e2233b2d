/// An error a client sees: an HTTP status and OpenAI's error object
/// (`{"error": {"message", "type", "param", "code"}}`). Internal errors never carry details
/// (the log has them).
struct APIError: Error, Sendable, CustomStringConvertible {
    let status: Int
    let type: String
    let message: String
    let param: String?
    let code: String?
    /// Seconds, for 429 and 503.
    var retryAfter: Int?

    init(status: Int, type: String, message: String, param: String? = nil, code: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    var description: String { "\(status) \(type): \(message)" }

    static func invalid(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, type: "invalid_request_error", message: message, param: param)
    }

    static func notFound(_ message: String, code: String? = nil) -> APIError {
        APIError(status: 404, type: "invalid_request_error", message: message, code: code)
    }

    static func modelNotFound(_ name: String) -> APIError {
        APIError(status: 404, type: "invalid_request_error",
                 message: "The model '\(name)' does not exist (hint: GET /v1/models lists the served ids)",
                 param: "model", code: "model_not_found")
    }

    static func methodNotAllowed(_ method: String, _ path: String) -> APIError {
        APIError(status: 405, type: "invalid_request_error", message: "Method \(method) is not allowed on \(path)")
    }

    static func overloaded(_ message: String, retryAfter: Int = 1) -> APIError {
        APIError(status: 429, type: "rate_limit_error", message: message, code: "rate_limit_exceeded", retryAfter: retryAfter)
    }

    static func unavailable(_ message: String, retryAfter: Int = 5) -> APIError {
        APIError(status: 503, type: "server_error", message: message, retryAfter: retryAfter)
    }

    static let `internal` = APIError(status: 500, type: "server_error", message: "The server had an error while processing your request.")

    var json: JSON {
        .object([("error", .object([
            ("message", .string(message)),
            ("type", .string(type)),
            ("param", .optional(param)),
            ("code", code.map { .string($0) } ?? .null),
        ]))])
    }
}
