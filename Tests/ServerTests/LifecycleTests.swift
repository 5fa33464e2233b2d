import Foundation
import Testing
@testable import Server

/// SIGINT/SIGTERM (here `stop`, which takes the same path): stop accepting, let in-flight work
/// finish within the grace period, cancel what is left, return.
@Suite struct LifecycleTests {
    @Test func gracefulStopFinishesInFlightWork() throws {
        let s = try TestServer { $0.stepDelay = 0.01; $0.shutdownGrace = 20 }
        let c = try s.client()
        defer { c.close() }
        try c.send("POST", "/v1/completions", body: "{\"prompt\": [1, 2, 3], \"max_tokens\": 40, \"temperature\": 0, \"return_token_ids\": true}")
        Thread.sleep(forTimeInterval: 0.1)
        let port = s.port
        #expect(s.stop())
        let r = try c.readResponse()
        #expect(r.status == 200)
        let ids = ((r.json["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]) ?? []
        #expect(!ids.isEmpty)
        #expect((try? RawClient(port: port)) == nil, "still accepting after stop")
    }

    @Test func graceExpiryAbortsStreams() throws {
        let s = try TestServer { $0.stepDelay = 0.02; $0.shutdownGrace = 0.3 }
        let c = try s.client()
        defer { c.close() }
        try c.send("POST", "/v1/completions", body: "{\"prompt\": [1, 2, 3], \"max_tokens\": 120, \"temperature\": 0, \"stream\": true}")
        #expect(try c.readHead() == 200)
        let start = Date()
        #expect(s.stop())
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test func idleKeepAliveTimesOut() throws {
        let s = try TestServer { $0.idleTimeout = 0.3 }
        defer { #expect(s.stop()) }
        let c = try s.client()
        defer { c.close() }
        try c.send("GET", "/health")
        #expect(try c.readResponse().status == 200)
        #expect(c.readUntilClosed())
    }

    @Test func stoppedServerRefusesNothingHalfway() throws {
        let s = try TestServer()
        #expect(try s.request("GET", "/health").status == 200)
        #expect(s.stop())
    }
}
