import CHTTPParser
import CLibUV
import Foundation

/// One client socket: http_parser over what it reads, at most one request in flight (later
/// pipelined bytes wait), writes queued through libuv. Loop thread only.
///
/// Memory: the uv_tcp_t holds a retained reference to its Connection in `data`; the close
/// callback releases it and frees the handle, so a connection lives until libuv is done with it.
final class Connection: @unchecked Sendable {
    enum State { case idle, reading, processing, closed }

    unowned let server: HTTPServer
    let handle: UnsafeMutablePointer<uv_tcp_t>
    let parser: UnsafeMutablePointer<http_parser>
    private(set) var state = State.idle
    private(set) var keepAlive = true

    // The request being parsed.
    private var url: [UInt8] = []
    private var fieldBuffer: [UInt8] = []
    private var valueBuffer: [UInt8] = []
    private var lastWasValue = false
    private var headers: [(name: String, value: String)] = []
    private var headerBytes = 0
    private var body: [UInt8] = []
    /// Set by a parser callback that refuses the request (a size cap).
    private var refusal: APIError?
    private var completed: HTTPRequest?
    /// Bytes after a complete request, parsed once its response has ended.
    private var pendingInput: [UInt8] = []
    private var exchange: Exchange?

    // Timing, uv_now milliseconds.
    private(set) var lastActivity: UInt64
    private(set) var requestStart: UInt64 = 0
    private(set) var lastWriteProgress: UInt64
    private var writesInFlight = 0
    private var closeWhenFlushed = false

    init(server: HTTPServer) {
        self.server = server
        handle = .allocate(capacity: 1)
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
        lastActivity = server.now
        lastWriteProgress = lastActivity
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        parser.deallocate()
    }

    var stream: UnsafeMutablePointer<uv_stream_t> { UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self) }
    private var handlePointer: UnsafeMutablePointer<uv_handle_t> { UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self) }

    /// Bytes written but not yet taken by the kernel.
    var queuedWriteBytes: Int { uv_stream_get_write_queue_size(stream) }
    var hasRequestInFlight: Bool { exchange != nil }

    static func from(_ parser: UnsafeMutablePointer<http_parser>?) -> Connection {
        Unmanaged<Connection>.fromOpaque(parser!.pointee.data).takeUnretainedValue()
    }

    /// Initializes the TCP handle on the loop; from here on the handle owns this connection
    /// until its close callback.
    func attach(to loop: UnsafeMutablePointer<uv_loop_t>) -> Bool {
        guard uv_tcp_init(loop, handle) == 0 else {
            handle.deallocate()
            return false
        }
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        return true
    }

    /// Starts reading; called once accepted.
    func start() -> Bool {
        uv_tcp_nodelay(handle, 1)
        if server.options.socketSendBufferBytes > 0 {
            var size = Int32(clamping: server.options.socketSendBufferBytes)
            uv_send_buffer_size(handlePointer, &size)
        }
        let r = uv_read_start(stream, { handle, suggested, buf in
            let conn = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            buf!.pointee = uv_buf_init(conn.server.readBuffer, UInt32(conn.server.readBufferSize))
        }, { stream, nread, buf in
            let conn = Unmanaged<Connection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            if nread > 0 {
                conn.received(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
            } else if nread < 0 {
                conn.close()   // EOF or error: the client is gone
            }
        })
        return r == 0
    }

    // MARK: Reading

    private func received(_ bytes: UnsafeRawBufferPointer) {
        lastActivity = server.now
        switch state {
        case .closed: return
        case .processing:
            // Pipelined bytes wait for the response in flight; a client that floods them is cut.
            pendingInput += bytes
            if pendingInput.count > server.options.maxHeaderBytes + server.options.maxBodyBytes { close() }
        case .idle, .reading:
            parse(bytes)
        }
    }

    private func parse(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let n = bytes.withMemoryRebound(to: CChar.self) { chars in
            withUnsafePointer(to: &server.parserSettings) { settings in
                http_parser_execute(parser, settings, chars.baseAddress, chars.count)
            }
        }
        let errno = http_errno(rawValue: parser.pointee.http_errno)
        if let request = completed {
            completed = nil
            // Paused in on_message_complete: keep what follows for after this response.
            if n < bytes.count { pendingInput = Array(bytes[n...]) + pendingInput }
            dispatch(request)
            return
        }
        if errno != HPE_OK {
            let error = refusal ?? APIError.invalid("Malformed HTTP request: \(String(cString: http_errno_description(errno))).")
            refuse(error)
            return
        }
        if parser.pointee.upgrade != 0 {
            refuse(APIError(status: 400, type: "invalid_request_error", message: "Protocol upgrades are not supported."))
        }
    }

    /// Answers a request that cannot be parsed further, then closes.
    private func refuse(_ error: APIError) {
        keepAlive = false
        state = .processing
        let request = HTTPRequest(method: "-", path: String(decoding: url.prefix(200), as: UTF8.self), query: nil,
                                  headers: [], body: [])
        let exchange = Exchange(connection: self, request: request)
        self.exchange = exchange
        exchange.respond(error: error)
    }

    private func dispatch(_ request: HTTPRequest) {
        state = .processing
        keepAlive = keepAlive && http_should_keep_alive(parser) != 0
        let exchange = Exchange(connection: self, request: request)
        self.exchange = exchange
        server.handle(exchange)
    }

    /// The response in flight ended: parse the next pipelined request, or close.
    func exchangeEnded(_ ended: Exchange) {
        guard ended === exchange else { return }
        exchange = nil
        server.requestEnded(ended)
        guard state != .closed else { return }
        if !keepAlive {
            closeWhenFlushed = true
            if writesInFlight == 0 { close() }
            return
        }
        resetRequest()
        lastActivity = server.now
        http_parser_pause(parser, 0)
        if pendingInput.isEmpty {
            state = .idle
        } else {
            // Pipelined requests are parsed on the next loop turn, not from here: answering them
            // one inside the other would nest a stack frame per request.
            server.post { [self] in
                guard state == .processing, exchange == nil else { return }
                state = .idle
                let input = pendingInput
                pendingInput = []
                input.withUnsafeBytes { parse($0) }
            }
        }
    }

    private func resetRequest() {
        url = []
        fieldBuffer = []
        valueBuffer = []
        lastWasValue = false
        headers = []
        headerBytes = 0
        body = []
        refusal = nil
    }

    // MARK: http_parser callbacks (return nonzero to stop parsing)

    func onMessageBegin() -> Int32 {
        resetRequest()
        state = .reading
        requestStart = server.now
        return 0
    }

    func onURL(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard countHeaderBytes(length) else { return 1 }
        url += UnsafeRawBufferPointer(start: data, count: length)
        return 0
    }

    func onHeaderField(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard countHeaderBytes(length) else { return 1 }
        if lastWasValue { flushHeader() }
        fieldBuffer += UnsafeRawBufferPointer(start: data, count: length)
        return 0
    }

    func onHeaderValue(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard countHeaderBytes(length) else { return 1 }
        lastWasValue = true
        valueBuffer += UnsafeRawBufferPointer(start: data, count: length)
        return 0
    }

    func onHeadersComplete() -> Int32 {
        if lastWasValue { flushHeader() }
        let declared = parser.pointee.content_length
        if declared != UInt64.max && declared > UInt64(server.options.maxBodyBytes) {
            refusal = tooLarge()
            return -1   // for this callback 1 means "no body"; any other nonzero is an error
        }
        // curl sends `Expect: 100-continue` with bodies over 1 KiB and waits a second for this.
        if headers.contains(where: { $0.name.lowercased() == "expect" && $0.value.lowercased() == "100-continue" }) {
            write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        return 0
    }

    func onBody(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard body.count + length <= server.options.maxBodyBytes else {
            refusal = tooLarge()
            return 1
        }
        body += UnsafeRawBufferPointer(start: data, count: length)
        return 0
    }

    func onMessageComplete() -> Int32 {
        let target = String(decoding: url, as: UTF8.self)
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let method = String(cString: http_method_str(http_method(rawValue: parser.pointee.method)))
        completed = HTTPRequest(method: method, path: String(parts.first ?? ""), query: parts.count > 1 ? String(parts[1]) : nil,
                                headers: headers, body: body)
        http_parser_pause(parser, 1)
        return 0
    }

    private func tooLarge() -> APIError {
        APIError(status: 413, type: "invalid_request_error",
                 message: "The request body is larger than \(server.options.maxBodyBytes) bytes (--max-body-bytes).")
    }

    private func countHeaderBytes(_ n: Int) -> Bool {
        headerBytes += n
        if headerBytes > server.options.maxHeaderBytes {
            refusal = APIError(status: 431, type: "invalid_request_error",
                               message: "The request line and headers are larger than \(server.options.maxHeaderBytes) bytes.")
            return false
        }
        return true
    }

    private func flushHeader() {
        headers.append((String(decoding: fieldBuffer, as: UTF8.self), String(decoding: valueBuffer, as: UTF8.self)))
        fieldBuffer = []
        valueBuffer = []
        lastWasValue = false
    }

    // MARK: Writing

    /// Queues bytes for the client. One allocation holds the uv_write_t and the bytes; the
    /// write callback frees it (also when the handle closes first: libuv then calls it with
    /// UV_ECANCELED before the close callback).
    func write(_ bytes: [UInt8]) {
        guard state != .closed, !bytes.isEmpty else { return }
        let headerSize = (MemoryLayout<uv_write_t>.size + 15) & ~15
        let raw = UnsafeMutableRawPointer.allocate(byteCount: headerSize + bytes.count, alignment: 16)
        let req = raw.bindMemory(to: uv_write_t.self, capacity: 1)
        let payload = (raw + headerSize).assumingMemoryBound(to: CChar.self)
        bytes.withUnsafeBytes { payload.update(from: $0.bindMemory(to: CChar.self).baseAddress!, count: bytes.count) }
        req.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var buf = uv_buf_init(payload, UInt32(bytes.count))
        if queuedWriteBytes == 0 { lastWriteProgress = server.now }
        let r = uv_write(req, stream, &buf, 1) { req, status in
            let conn = Unmanaged<Connection>.fromOpaque(req!.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(req!).deallocate()
            conn.writeCompleted(status)
        }
        if r != 0 {
            raw.deallocate()
            close()
            return
        }
        writesInFlight += 1
        if queuedWriteBytes > server.options.maxPendingWriteBytes {
            server.logger.info("closing a client that does not read (\(queuedWriteBytes) bytes queued)")
            close()
        }
    }

    private func writeCompleted(_ status: Int32) {
        writesInFlight -= 1
        lastWriteProgress = server.now
        if status < 0 {
            close()
        } else if closeWhenFlushed && writesInFlight == 0 {
            close()
        }
    }

    // MARK: Timeouts and closing

    /// Called by the server's timer sweep.
    func checkTimeouts(now: UInt64) {
        guard state != .closed else { return }
        let o = server.options
        if writesInFlight > 0 && queuedWriteBytes > 0 && Double(now - lastWriteProgress) > o.writeTimeout * 1000 {
            close()
            return
        }
        switch state {
        case .idle:
            if Double(now - lastActivity) > o.idleTimeout * 1000 { close() }
        case .reading:
            if Double(now - requestStart) > o.requestTimeout * 1000 {
                refuse(APIError(status: 408, type: "invalid_request_error",
                                message: "The request did not arrive within \(o.requestTimeout) s."))
            }
        case .processing, .closed:
            break
        }
    }

    /// Closes the socket now; an exchange in flight is cancelled.
    func close() {
        guard state != .closed else { return }
        state = .closed
        if let exchange {
            self.exchange = nil
            exchange.connectionLost()
            server.requestEnded(exchange)
        }
        server.connectionClosed(self)
        uv_close(handlePointer) { handle in
            let conn = Unmanaged<Connection>.fromOpaque(handle!.pointee.data)
            UnsafeMutableRawPointer(handle!).deallocate()
            conn.release()
        }
    }
}
