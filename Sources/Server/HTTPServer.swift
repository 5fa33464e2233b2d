import CHTTPParser
import CLibUV
import Foundation
import Logging

/// The libuv loop: one thread that accepts, reads, parses and writes, and never computes.
/// Other threads reach it only through `post` (a locked mailbox plus `uv_async_send`).
/// Handles are allocated here and freed only in their close callbacks.
final class HTTPServer: @unchecked Sendable {
    let options: ServerOptions
    let logger: Logger
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let listener: UnsafeMutablePointer<uv_tcp_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let sweep: UnsafeMutablePointer<uv_timer_t>
    private let signals: [UnsafeMutablePointer<uv_signal_t>]
    let readBufferSize = 64 * 1024
    let readBuffer: UnsafeMutablePointer<CChar>
    var parserSettings = http_parser_settings()
    private var connections: [ObjectIdentifier: Connection] = [:]
    private(set) var port = 0

    private let mailboxLock = NSLock()
    private var mailbox: [@Sendable () -> Void] = []
    private var wakeupClosed = false

    /// Route handler: answers through the exchange, now or later.
    var onRequest: (Exchange) -> Void = { $0.respond(error: .internal) }
    /// Every exchange that ends (answered or abandoned), for logs and metrics.
    var onRequestEnded: (Exchange) -> Void = { _ in }
    /// Shutdown hooks: stop taking work; abort the rest at the end of the grace period;
    /// whether the engine is done.
    var onShutdown: () -> Void = {}
    var onAbort: () -> Void = {}
    var engineIdle: () -> Bool = { true }

    private(set) var shuttingDown = false
    private var shutdownDeadline: UInt64 = 0
    private var aborted = false

    init(options: ServerOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        loop = .allocate(capacity: 1)
        guard uv_loop_init(loop) == 0 else { throw ServerError.startup("uv_loop_init failed") }
        listener = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        sweep = .allocate(capacity: 1)
        signals = [.allocate(capacity: 1), .allocate(capacity: 1)]
        readBuffer = .allocate(capacity: readBufferSize)

        http_parser_settings_init(&parserSettings)
        parserSettings.on_message_begin = { Connection.from($0).onMessageBegin() }
        parserSettings.on_url = { Connection.from($0).onURL($1, $2) }
        parserSettings.on_header_field = { Connection.from($0).onHeaderField($1, $2) }
        parserSettings.on_header_value = { Connection.from($0).onHeaderValue($1, $2) }
        parserSettings.on_headers_complete = { Connection.from($0).onHeadersComplete() }
        parserSettings.on_body = { Connection.from($0).onBody($1, $2) }
        parserSettings.on_message_complete = { Connection.from($0).onMessageComplete() }

        let me = Unmanaged.passUnretained(self).toOpaque()
        uv_tcp_init(loop, listener)
        listener.pointee.data = me
        uv_async_init(loop, wakeup) { handle in
            Unmanaged<HTTPServer>.fromOpaque(handle!.pointee.data).takeUnretainedValue().drainMailbox()
        }
        wakeup.pointee.data = me
        uv_timer_init(loop, sweep)
        sweep.pointee.data = me
        for (handle, signal) in zip(signals, [SIGINT, SIGTERM]) {
            uv_signal_init(loop, handle)
            handle.pointee.data = me
            uv_signal_start(handle, { handle, _ in
                Unmanaged<HTTPServer>.fromOpaque(handle!.pointee.data).takeUnretainedValue().signalled()
            }, signal)
        }
    }

    deinit {
        readBuffer.deallocate()
        loop.deallocate()
    }

    /// Binds and listens; `port` then tells the port (useful with port 0).
    func listen() throws {
        var storage = sockaddr_storage()
        let r = withUnsafeMutablePointer(to: &storage) { p -> Int32 in
            if options.host.contains(":") {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(options.host, Int32(options.port), $0) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(options.host, Int32(options.port), $0) }
        }
        guard r == 0 else { throw ServerError.startup("cannot parse the host address '\(options.host)'") }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(listener, $0, 0) }
        }
        guard bound == 0 else { throw ServerError.startup("cannot bind \(options.host):\(options.port): \(uvError(bound))") }
        let listening = uv_listen(asStream(listener), 1024) { server, status in
            guard status == 0 else { return }
            Unmanaged<HTTPServer>.fromOpaque(server!.pointee.data).takeUnretainedValue().accept()
        }
        guard listening == 0 else {
            throw ServerError.startup("cannot listen on \(options.host):\(options.port): \(uvError(listening))")
        }
        var name = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &name) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = uv_tcp_getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: withUnsafePointer(to: &name) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port }
        }))
    }

    /// Runs the loop on the calling thread until shutdown completes.
    func run() {
        uv_timer_start(sweep, { timer in
            Unmanaged<HTTPServer>.fromOpaque(timer!.pointee.data).takeUnretainedValue().tick()
        }, 100, 100)
        uv_run(loop, UV_RUN_DEFAULT)
        uv_loop_close(loop)
    }

    /// Runs `work` on the loop thread soon. Safe from any thread; dropped after shutdown.
    func post(_ work: @escaping @Sendable () -> Void) {
        mailboxLock.lock()
        defer { mailboxLock.unlock() }
        guard !wakeupClosed else { return }
        mailbox.append(work)
        if mailbox.count == 1 { uv_async_send(wakeup) }
    }

    private func drainMailbox() {
        mailboxLock.lock()
        let work = mailbox
        mailbox.removeAll()
        mailboxLock.unlock()
        for w in work { w() }
    }

    var now: UInt64 { uv_now(loop) }

    private func accept() {
        let conn = Connection(server: self)
        guard conn.attach(to: loop) else { return }
        guard uv_accept(asStream(listener), conn.stream) == 0 else {
            conn.close()
            return
        }
        // Over the cap the socket is accepted and closed at once, so it does not sit in the backlog.
        guard connections.count < options.maxConnections, !shuttingDown, conn.start() else {
            conn.close()
            return
        }
        connections[ObjectIdentifier(conn)] = conn
    }

    func handle(_ exchange: Exchange) { onRequest(exchange) }
    func requestEnded(_ exchange: Exchange) { onRequestEnded(exchange) }

    func connectionClosed(_ conn: Connection) {
        connections.removeValue(forKey: ObjectIdentifier(conn))
    }

    var connectionCount: Int { connections.count }

    private func tick() {
        let t = now
        for conn in Array(connections.values) { conn.checkTimeouts(now: t) }
        if shuttingDown { continueShutdown(now: t) }
    }

    // MARK: Shutdown

    private func signalled() {
        if shuttingDown {
            logger.notice("second signal: cancelling in-flight work now")
            shutdownDeadline = 0
        } else {
            beginShutdown()
        }
    }

    /// Stops accepting and lets in-flight requests finish within the grace period. Any thread.
    func requestShutdown() {
        post { [self] in if !shuttingDown { beginShutdown() } }
    }

    private func beginShutdown() {
        shuttingDown = true
        shutdownDeadline = now + UInt64(max(0, options.shutdownGrace) * 1000)
        logger.notice("shutting down: no new connections; in-flight requests have \(options.shutdownGrace) s")
        uv_close(asHandle(listener), nil)
        onShutdown()
        continueShutdown(now: now)
    }

    private func continueShutdown(now: UInt64) {
        // Keep-alive connections with nothing in flight go now.
        for conn in Array(connections.values) where !conn.hasRequestInFlight && conn.state != .reading {
            conn.close()
        }
        let busy = connections.values.contains { $0.hasRequestInFlight }
        if !busy && engineIdle() {
            finishShutdown()
            return
        }
        if now >= shutdownDeadline {
            if !aborted {
                aborted = true
                logger.notice("grace period over: cancelling in-flight work")
                onAbort()
                shutdownDeadline = now + 2000   // a last chance to write the aborted responses
            } else {
                finishShutdown()
            }
        }
    }

    private func finishShutdown() {
        for conn in Array(connections.values) { conn.close() }
        uv_timer_stop(sweep)
        uv_close(asHandle(sweep), nil)
        for s in signals {
            uv_signal_stop(s)
            uv_close(asHandle(s), nil)
        }
        mailboxLock.lock()
        wakeupClosed = true
        mailboxLock.unlock()
        uv_close(asHandle(wakeup), nil)
    }

    /// Frees the handles after the loop has ended.
    func freeHandles() {
        listener.deallocate()
        wakeup.deallocate()
        sweep.deallocate()
        for s in signals { s.deallocate() }
    }
}

private func asStream(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
}

private func asHandle<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)
}

func uvError(_ code: Int32) -> String { String(cString: uv_strerror(code)) }

/// Errors starting the server (bad address, port in use, model that does not load).
public struct ServerError: Error, CustomStringConvertible {
    public let description: String
    static func startup(_ message: String) -> ServerError { ServerError(description: message) }
}
