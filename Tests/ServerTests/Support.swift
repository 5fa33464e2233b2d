import Foundation
import Glibc
import LanguageModel
import Logging
import Transfer
@testable import Server

/// Paths of the committed fixtures.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
let tinyModel = repositoryRoot + "/Tests/Fixtures/models/llama-tiny-f32"
let defaultModel = repositoryRoot + "/models/smollm2-135m-instruct"
let defaultModelPresent = FileManager.default.fileExists(atPath: defaultModel + "/model.safetensors")

/// A tiny model folder with a tokenizer: the llama-tiny-f32 fixture (vocab 256) beside a
/// byte-level tokenizer whose 256 tokens are the 256 bytes (GPT-2's byte-to-unicode table, no
/// merges) and a plain chat template, so text endpoints work on a model that runs in
/// milliseconds.
let tinyTextModel: String = {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("graft-server-tests-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for file in ["config.json", "model.safetensors"] {
        let target = dir + "/" + file
        if !FileManager.default.fileExists(atPath: target) {
            try? FileManager.default.createSymbolicLink(atPath: target, withDestinationPath: tinyModel + "/" + file)
        }
    }
    var vocab: [String: Int] = [:]
    for (byte, char) in byteLevelAlphabet().enumerated() { vocab[String(char)] = byte }
    let tokenizer: [String: Any] = [
        "version": "1.0",
        "added_tokens": [] as [Any],
        "normalizer": NSNull(),
        "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
        "post_processor": NSNull(),
        "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
        "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                  "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": [] as [Any]],
    ]
    let config: [String: Any] = [
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
    ]
    try? JSONSerialization.data(withJSONObject: tokenizer).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
    try? JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
    return dir
}()

/// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to 256 + n.
func byteLevelAlphabet() -> [Character] {
    var out: [Character] = []
    var n = 0
    for b in 0..<256 {
        if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
            out.append(Character(Unicode.Scalar(UInt32(b))!))
        } else {
            out.append(Character(Unicode.Scalar(UInt32(256 + n))!))
            n += 1
        }
    }
    return out
}

/// A server on an ephemeral loopback port, run on its own thread (the loop thread).
final class TestServer: @unchecked Sendable {
    let server: GraftServer
    private let done = DispatchSemaphore(value: 0)

    init(model: String = tinyTextModel, configure: (inout ServerOptions) -> Void = { _ in }) throws {
        var o = ServerOptions(modelDirectory: model)
        o.port = 0
        o.logRequests = false
        o.threads = 1
        // Plugin variants and transfer jobs run `graft delta build`, built beside the tests.
        o.graftExecutable = PluginHost.executableDirectory + "/graft"
        configure(&o)
        var logger = Logger(label: "graft.test")
        logger.logLevel = .error
        server = try GraftServer(options: o, logger: logger)
        let thread = Thread { [server, done] in
            server.run()
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    var port: Int { server.port }

    /// Graceful stop; waits until `run` has returned.
    func stop(timeout: Double = 30) -> Bool {
        server.stop()
        return done.wait(timeout: .now() + timeout) == .success
    }

    func client() throws -> RawClient { try RawClient(port: port) }

    /// One request on a fresh connection.
    func request(_ method: String, _ path: String, body: String? = nil) throws -> HTTPResponse {
        let c = try client()
        defer { c.close() }
        try c.send(method, path, body: body)
        return try c.readResponse()
    }

    func post(_ path: String, _ json: [String: Any]) throws -> HTTPResponse {
        let data = try JSONSerialization.data(withJSONObject: json)
        return try request("POST", path, body: String(decoding: data, as: UTF8.self))
    }
}

struct HTTPResponse {
    let status: Int
    let headers: [String: String]
    let body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    /// SSE `data:` payloads in order.
    var events: [String] {
        text.components(separatedBy: "\n\n").compactMap { block in
            block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
        }
    }
}

struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// A blocking loopback HTTP/1.1 client over a raw socket, so tests can also send what no
/// well-behaved client would.
final class RawClient: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int, timeout: Double = 60, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket: \(errno)") }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else {
            Glibc.close(fd)
            throw ClientError(description: "connect: \(errno)")
        }
    }

    func close() { Glibc.close(fd) }

    /// Runs `body` with a shorter receive timeout.
    static func withTimeout<T>(_ c: RawClient, _ seconds: Double, _ body: (RawClient) throws -> T) rethrows -> T {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return try body(c)
    }

    /// Closes with a TCP reset (SO_LINGER 0): the rudest way to vanish.
    func reset() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        Glibc.close(fd)
    }

    func sendRaw(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError(description: "send failed: \(errno)") }
            sent += n
        }
    }

    func sendRaw(_ text: String) throws { try sendRaw(Array(text.utf8)) }

    func send(_ method: String, _ path: String, body: String? = nil, headers: [String] = []) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for h in headers { head += h + "\r\n" }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        try sendRaw(head + "\r\n" + (body ?? ""))
    }

    /// Reads more bytes; false at EOF.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw ClientError(description: "recv failed (timeout?): \(errno)") }
        if n == 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// Everything until the server closes the connection (nil on a read timeout).
    func readAll() -> [UInt8]? {
        while true {
            guard let more = try? fill() else { return nil }
            if !more { return buffer }
        }
    }

    /// Whether the server has closed the connection (reads to EOF, discarding data).
    func readUntilClosed() -> Bool {
        while true {
            guard let more = try? fill() else { return false }
            if !more { return true }
        }
    }

    private func readLine() throws -> String {
        while true {
            if let i = buffer.firstIndex(of: 0x0A) {
                let line = buffer[..<i]
                buffer.removeFirst(i + 1)
                return String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
            }
            guard try fill() else { throw ClientError(description: "connection closed mid-response") }
        }
    }

    private func readBytes(_ n: Int) throws -> [UInt8] {
        while buffer.count < n {
            guard try fill() else { throw ClientError(description: "connection closed mid-body") }
        }
        let out = Array(buffer[..<n])
        buffer.removeFirst(n)
        return out
    }

    /// The status line and headers only (a stream's body keeps coming).
    func readHead() throws -> Int {
        let statusLine = try readLine()
        while try !readLine().isEmpty {}
        return Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// One response: status, headers, body (Content-Length or chunked).
    func readResponse() throws -> HTTPResponse {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw ClientError(description: "bad status line '\(statusLine)'") }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        var body: [UInt8] = []
        if headers["transfer-encoding"] == "chunked" {
            while true {
                let size = Int(try readLine(), radix: 16) ?? 0
                if size == 0 {
                    _ = try readLine()
                    break
                }
                body += try readBytes(size)
                _ = try readLine()
            }
        } else if let length = Int(headers["content-length"] ?? "0") {
            body = try readBytes(length)
        }
        return HTTPResponse(status: status, headers: headers, body: body)
    }
}

/// `graft generate`'s greedy tokens for a prompt, in process.
func generateAlone(model: Model, prompt: [Int], maxTokens: Int, extraStops: [Int] = []) throws -> [Int] {
    var p = SamplingParameters()
    p.maxTokens = maxTokens
    p.stopTokens = extraStops
    return try generate(model: model, prompt: prompt, parameters: p) { _ in true }.tokens
}
