import CLibUV
import Foundation

/// One request and its response on a connection. Route handlers answer through it, at once or
/// later (streaming, waiting for the engine). Loop thread only.
final class Exchange: @unchecked Sendable {
    private(set) weak var connection: Connection?
    let request: HTTPRequest
    let started: UInt64
    /// The route's name for metrics (`/v1/completions`, or `other`).
    var route = "other"
    private(set) var status = 0
    private(set) var finished = false
    private var streaming = false
    /// Extra fields for the request's log line (tokens in and out, say).
    var logDetails = ""
    /// Called when the client goes away before the response ends (cancels engine work).
    var onCancel: (() -> Void)?

    init(connection: Connection, request: HTTPRequest) {
        self.connection = connection
        self.request = request
        started = DispatchTime.now().uptimeNanoseconds
    }

    var isOpen: Bool { connection != nil && !finished }

    /// A whole response with a body.
    func respond(status: Int, contentType: String = "application/json", headers extra: [(String, String)] = [], body: [UInt8]) {
        guard !finished, let connection else { return }
        self.status = status
        var headers = [("Content-Type", contentType), ("Content-Length", String(body.count))]
        headers += extra
        headers.append(("Connection", connection.keepAlive ? "keep-alive" : "close"))
        connection.write(HTTPStatus.head(status: status, headers: headers) + body)
        end()
    }

    func respond(status: Int = 200, json: JSON, headers: [(String, String)] = []) {
        respond(status: status, headers: headers, body: json.bytes + [0x0A])
    }

    func respond(error: APIError) {
        var headers: [(String, String)] = []
        if let seconds = error.retryAfter { headers.append(("Retry-After", String(seconds))) }
        respond(status: error.status, json: error.json, headers: headers)
    }

    /// Starts a server-sent-event stream (chunked, so the connection can be kept alive).
    func startStream() {
        guard !finished, !streaming, let connection else { return }
        status = 200
        streaming = true
        connection.write(HTTPStatus.head(status: 200, headers: [
            ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"), ("Connection", connection.keepAlive ? "keep-alive" : "close"),
        ]))
    }

    var isStreaming: Bool { streaming }

    /// One SSE event: `data: <payload>\n\n`, as one HTTP chunk.
    func sendEvent(_ payload: [UInt8]) {
        guard streaming, !finished, let connection else { return }
        let data = Array("data: ".utf8) + payload + [0x0A, 0x0A]
        connection.write(Array(String(data.count, radix: 16).utf8) + [0x0D, 0x0A] + data + [0x0D, 0x0A])
    }

    /// Sends `data: [DONE]` and the last chunk.
    func endStream() {
        guard streaming, !finished, let connection else { return }
        sendEvent(Array("[DONE]".utf8))
        connection.write(Array("0\r\n\r\n".utf8))
        end()
    }

    private func end() {
        finished = true
        onCancel = nil
        connection?.exchangeEnded(self)
    }

    /// The connection closed under this exchange.
    func connectionLost() {
        connection = nil
        guard !finished else { return }
        finished = true
        if status == 0 { status = 499 }   // nginx's "client closed request", for the log
        let cancel = onCancel
        onCancel = nil
        cancel?()
    }
}
