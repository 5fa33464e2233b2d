import Foundation
import Glibc
import LanguageModel
import TensorCore
import Testing
@testable import Server

/// What no well-behaved client sends. After each case the server must still answer a normal
/// request, and nothing may stay allocated for a client that is gone.
@Suite struct HostileInputTests {
    /// The normal request every case ends with.
    func stillServes(_ s: TestServer, _ note: Comment) throws {
        let r = try s.post("/v1/completions", ["prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0])
        #expect(r.status == 200, note)
    }

    /// Sends raw bytes on a fresh connection, returns the status of the answer (nil: closed).
    func rawStatus(_ s: TestServer, _ bytes: [UInt8]) throws -> Int? {
        let c = try s.client()
        defer { c.close() }
        try? c.sendRaw(bytes)
        return try? c.readResponse().status
    }

    func waitUntilIdle(_ s: TestServer, seconds: Double = 20) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let h = try s.request("GET", "/health").json
            if h["running"] as? Int == 0 && h["queued"] as? Int == 0 { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    @Test func malformedRequestLinesAndHeaders() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let cases: [(String, [UInt8])] = [
            ("garbage", Array("\u{01}\u{02}hello\r\n\r\n".utf8)),
            ("no version", Array("GET /health\r\n\r\n".utf8)),
            ("bad method", Array("FLY /health HTTP/1.1\r\n\r\n".utf8)),
            ("space in header name", Array("GET /health HTTP/1.1\r\nBad Header: x\r\n\r\n".utf8)),
            ("bad content-length", Array("POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n".utf8)),
            ("two content-lengths", Array("POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".utf8)),
            ("bad chunk size", Array("POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8)),
            ("NUL in URL", [UInt8]("GET /he".utf8) + [0] + Array("alth HTTP/1.1\r\n\r\n".utf8)),
            ("binary", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919) }),
            ("HTTP/2 preface", Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)),
        ]
        for (name, bytes) in cases {
            let status = try rawStatus(s, bytes)
            // http_parser is lenient with some (HTTP/0.9 lines, odd header names): any answer
            // but a 5xx, or a closed connection, is fine.
            #expect(status == nil || status! < 500, "\(name): \(String(describing: status))")
            try stillServes(s, "after \(name)")
        }
    }

    @Test func oversizedHeadersAndBodies() throws {
        let s = try TestServer { $0.maxBodyBytes = 10_000; $0.maxHeaderBytes = 4096 }
        defer { #expect(s.stop()) }
        let bigHeader = "GET /health HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 8000) + "\r\n\r\n"
        #expect(try rawStatus(s, Array(bigHeader.utf8)) == 431)
        try stillServes(s, "after a big header")
        let longURL = "GET /" + String(repeating: "x", count: 8000) + " HTTP/1.1\r\n\r\n"
        #expect(try rawStatus(s, Array(longURL.utf8)) == 431)
        // Declared too large: refused before the body is read.
        #expect(try rawStatus(s, Array("POST /v1/completions HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n".utf8)) == 413)
        // Sent too large, chunked (no length declared).
        let chunk = String(repeating: "b", count: 4000)
        var chunked = "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        for _ in 0..<4 { chunked += String(chunk.count, radix: 16) + "\r\n" + chunk + "\r\n" }
        chunked += "0\r\n\r\n"
        #expect(try rawStatus(s, Array(chunked.utf8)) == 413)
        try stillServes(s, "after big bodies")
    }

    @Test func invalidUTF8AndJSON() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let bodies: [[UInt8]] = [
            [UInt8]("{\"prompt\": \"".utf8) + [0xFF, 0xFE, 0xC3] + [UInt8]("\"}".utf8),
            Array("{\"prompt\": \"\\ud800\"}".utf8),      // lone surrogate escape
            Array("{\"prompt\": [1, 2,]}".utf8),
            Array(String(repeating: "[", count: 100_000).utf8),  // deep nesting
            Array("{\"prompt\": 1e999999}".utf8),
            Array("".utf8),
            Array("null".utf8),
            Array("{\"prompt\": [1, 2], \"max_tokens\": 1.5}".utf8),
            Array("{\"prompt\": [1, 2], \"n\": 1e300}".utf8),
            Array("{\"messages\": [{\"role\": \"user\", \"content\": {\"x\": 1}}]}".utf8),
        ]
        for (i, body) in bodies.enumerated() {
            let c = try s.client()
            try c.sendRaw(Array("POST /v1/completions HTTP/1.1\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            let r = try c.readResponse()
            c.close()
            #expect(r.status == 400 || r.status == 200, "body \(i): \(r.status)")
            if r.status != 200 { #expect((r.json["error"] as? [String: Any])?["message"] != nil) }
        }
        let chat = try s.request("POST", "/v1/chat/completions", body: "{\"messages\": [{\"role\": \"user\", \"content\": {\"x\": 1}}]}")
        #expect(chat.status == 400)
        try stillServes(s, "after invalid bodies")
    }

    @Test func truncatedBodiesAndVanishingClients() throws {
        let s = try TestServer { $0.requestTimeout = 1; $0.stepDelay = 0.01 }
        defer { #expect(s.stop()) }
        // A chunked body cut off, then the client leaves.
        let c1 = try s.client()
        try c1.sendRaw("POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"prompt\": [1,")
        c1.close()
        // Content-Length promises more than arrives: the request timeout answers 408 and closes.
        let c2 = try s.client()
        try c2.sendRaw("POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
        let r = try c2.readResponse()
        #expect(r.status == 408)
        #expect(c2.readUntilClosed())
        c2.close()
        try stillServes(s, "after truncated bodies")

        // A streaming client that vanishes mid-stream: its sequence is cancelled and its KV freed.
        let c3 = try s.client()
        try c3.send("POST", "/v1/completions", body: "{\"prompt\": [1, 2, 3], \"max_tokens\": 120, \"stream\": true, \"temperature\": 0}")
        #expect(try c3.readHead() == 200)
        Thread.sleep(forTimeInterval: 0.2)
        c3.reset()
        #expect(try waitUntilIdle(s), "the vanished client's sequence still runs")
        let metrics = try s.request("GET", "/metrics").text
        #expect(metrics.contains("graft_kv_cache_reserved_bytes 0.0"), "KV cache still reserved")
        // A non-streaming client that leaves before its answer.
        let c4 = try s.client()
        try c4.send("POST", "/v1/completions", body: "{\"prompt\": [1, 2, 3], \"max_tokens\": 120, \"temperature\": 0}")
        Thread.sleep(forTimeInterval: 0.1)
        c4.close()
        #expect(try waitUntilIdle(s))
        try stillServes(s, "after vanishing clients")
    }

    /// A client that asks for a long stream and stops reading: dropped once its unread bytes
    /// pass the cap (or its writes stall past the timeout); its sequences are cancelled.
    @Test func clientThatStopsReading() throws {
        let s = try TestServer { $0.maxPendingWriteBytes = 16 * 1024; $0.writeTimeout = 1; $0.idleTimeout = 3; $0.socketSendBufferBytes = 4096 }
        defer { #expect(s.stop()) }
        let c = try RawClient(port: s.port, receiveBuffer: 2048)
        try c.send("POST", "/v1/completions", body: "{\"prompt\": [1, 2, 3], \"max_tokens\": 120, \"n\": 8, \"stream\": true, \"ignore_eos\": true}")
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try waitUntilIdle(s), "the slow reader's sequences still run")
        try stillServes(s, "while a client does not read")
        // Reading now: the stream was cut (no [DONE]) and the socket closed.
        let rest = c.readAll()
        #expect(rest != nil, "the slow reader is still connected")
        #expect(rest.map { !String(decoding: $0, as: UTF8.self).contains("data: [DONE]") } == true, "the stream was not cut")
        c.close()
    }

    /// Seeded mutations of valid requests: bytes flipped, inserted, deleted, cut short. Whole
    /// requests get an answer other than 5xx (or a closed connection); the server keeps serving.
    @Test func mutatedRequestsFuzz() throws {
        let s = try TestServer { $0.requestTimeout = 1 }
        defer { #expect(s.stop()) }
        var rng = SplitMix64(seed: 5)
        let bodies = [
            #"{"prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0, "logprobs": 2, "echo": true}"#,
            #"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": true, "stop": ["a"]}"#,
            #"{"prompt": ["ab", "cd"], "n": 2, "max_tokens": 1, "seed": 3}"#,
        ]
        for i in 0..<200 {
            let body = Array(bodies[i % bodies.count].utf8)
            let path = i % 2 == 0 ? "completions" : "chat/completions"
            var bytes = Array("POST /v1/\(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 4 {
                case 0: bytes[at] ^= UInt8(1 << (rng.next() % 8))
                case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                case 2: bytes.remove(at: at)
                default: bytes[at] = UInt8(ascii: "\"")
                }
            }
            let c = try s.client()
            try? c.sendRaw(bytes)
            if i % 3 == 0 {
                // Complete requests are answered at once; incomplete ones are left to time out.
                c.close()
                continue
            }
            let status = try? RawClient.withTimeout(c, 0.25) { try $0.readResponse().status }
            if let status { #expect(status < 500, "mutation \(i): \(status)") }
            c.close()
        }
        try stillServes(s, "after 200 mutated requests")
    }

    /// Slowloris: headers dribbled a byte at a time never tie the server up.
    @Test func slowloris() throws {
        let s = try TestServer { $0.requestTimeout = 1 }
        defer { #expect(s.stop()) }
        let slow = try (0..<20).map { _ in try s.client() }
        let head = Array("GET /health HTTP/1.1\r\nX-Slow: ".utf8)
        for i in 0..<head.count where i < 12 {
            for c in slow { try? c.sendRaw([head[i]]) }
            Thread.sleep(forTimeInterval: 0.05)
            if i == 6 { try stillServes(s, "while slow clients dribble") }
        }
        Thread.sleep(forTimeInterval: 1.3)
        for c in slow {
            #expect(c.readUntilClosed(), "a slow client is still connected")
            c.close()
        }
        try stillServes(s, "after slowloris")
    }

    @Test func thousandConnectionsOpenedAndDropped() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        var open: [RawClient] = []
        for i in 0..<1000 {
            let c = try s.client()
            if i % 3 == 0 { try? c.sendRaw("GET /heal") }
            if i % 2 == 0 { c.reset() } else { open.append(c) }
            if open.count >= 100 {
                for c in open { c.close() }
                open.removeAll()
            }
        }
        for c in open { c.close() }
        try stillServes(s, "after 1,000 dropped connections")
        // Every socket is released (the sweep closes them as their EOF arrives).
        var count = -1
        for _ in 0..<50 {
            let text = try s.request("GET", "/metrics").text
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("graft_open_connections_count ") }) {
                count = Int(Double(line.split(separator: " ")[1]) ?? -1)
            }
            if count <= 1 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(count <= 1)
    }

    @Test func keepAliveAndPipelining() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let c = try s.client()
        defer { c.close() }
        for _ in 0..<3 {
            try c.send("GET", "/health")
            #expect(try c.readResponse().status == 200)
        }
        // Two requests in one write: answered in order on the same connection.
        try c.sendRaw("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try c.readResponse().json["status"] as? String == "ok")
        #expect(try c.readResponse().json["object"] as? String == "list")
        // Thousands pipelined in one write: all answered, in order (no recursion per request).
        try c.sendRaw(String(repeating: "GET /health HTTP/1.1\r\n\r\n", count: 3000))
        for _ in 0..<3000 { #expect(try c.readResponse().status == 200) }
        // Expect: 100-continue (curl, bodies over 1 KiB): the interim answer comes at once.
        let body = "{\"prompt\": [1, 2], \"max_tokens\": 1}"
        try c.sendRaw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        #expect(try c.readResponse().status == 100)
        try c.sendRaw(body)
        #expect(try c.readResponse().status == 200)
        // HTTP/1.0 without keep-alive: answered, then closed.
        let old = try s.client()
        try old.sendRaw("GET /health HTTP/1.0\r\n\r\n")
        #expect(try old.readResponse().status == 200)
        #expect(old.readUntilClosed())
        old.close()
    }
}
