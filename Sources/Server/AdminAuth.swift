import Foundation

/// The admin API's bearer token (`--admin-token-file F` or `GRAFT_ADMIN_TOKEN`). Checked in
/// constant time: the comparison reads every byte of both, whatever matches.
struct AdminAuth: Sendable {
    let token: [UInt8]?

    init(token: String?) {
        let trimmed = token?.trimmingCharacters(in: .whitespacesAndNewlines)
        self.token = trimmed.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
    }

    /// nil when the request may use the admin API; otherwise the error to answer (401 without
    /// credentials, 403 with wrong ones or when no token is configured).
    func check(_ request: HTTPRequest) -> APIError? {
        guard let token else {
            return APIError(status: 403, type: "permission_error",
                            message: "The admin API is disabled (hint: start graft serve with --admin-token-file or GRAFT_ADMIN_TOKEN).")
        }
        guard let header = request.header("authorization"), header.lowercased().hasPrefix("bearer ") else {
            return APIError(status: 401, type: "authentication_error",
                            message: "This route needs Authorization: Bearer <admin token>.", code: "missing_token")
        }
        let given = Array(header.utf8.dropFirst(7))
        guard !given.isEmpty else {
            return APIError(status: 401, type: "authentication_error", message: "The bearer token is empty.", code: "missing_token")
        }
        guard Self.constantTimeEqual(given, token) else {
            return APIError(status: 403, type: "permission_error", message: "The admin token is wrong.", code: "invalid_token")
        }
        return nil
    }

    /// Equal without an early exit: the time depends only on the lengths.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt64(a.count ^ b.count)
        let n = max(a.count, b.count)
        for i in 0..<n {
            let x = i < a.count ? a[i] : 0, y = i < b.count ? b[i] : 0
            diff |= UInt64(x ^ y)
        }
        return diff == 0
    }
}
