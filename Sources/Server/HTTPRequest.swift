/// One parsed HTTP/1.1 request.
struct HTTPRequest: Sendable {
    let method: String
    /// The request target's path, without the query.
    let path: String
    let query: String?
    let headers: [(name: String, value: String)]
    let body: [UInt8]

    func header(_ name: String) -> String? {
        headers.last { $0.name.lowercased() == name }?.value
    }
}

enum HTTPStatus {
    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Payload Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status"
        }
    }

    /// The status line and headers of a response, ending with the blank line.
    static func head(status: Int, headers: [(String, String)]) -> [UInt8] {
        var s = "HTTP/1.1 \(status) \(reason(status))\r\n"
        for (name, value) in headers { s += "\(name): \(value)\r\n" }
        s += "\r\n"
        return Array(s.utf8)
    }
}
