import Foundation
import Testing
import Transfer
@testable import Server

/// Plugin variants of `POST`/`PUT /v1/variants` run in a child `graft delta build` (issue 6):
/// a crashing plugin fails its request only; a `DELETE` of a name whose build is in flight
/// wins over that build. The `test-crash` plugin aborts or holds its run when asked.
@Suite struct PluginIsolationTests {
    let helper = VariantAPITests()

    func server() throws -> TestServer {
        try TestServer { [helper] in $0.adminToken = VariantAPITests.token; $0.deltaDirectory = helper.deltaDir }
    }

    func error(_ r: HTTPResponse) -> [String: Any] { r.json["error"] as? [String: Any] ?? [:] }

    /// What this server's builds left in its private temporary folder.
    func leftovers(_ s: TestServer) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: s.server.buildDirectory)) ?? ["(no folder)"]
    }

    /// Waits (no time limit that a test outcome depends on, only a generous deadline against a hang) for a file.
    func waitFor(_ path: String) -> Bool {
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: path) {
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }

    @Test func aCrashingPluginFailsOnlyItsRequest() throws {
        let s = try server()
        defer { #expect(s.stop()) }
        let crashed = try helper.admin(s, "POST", "/v1/variants", ["name": "crashy", "plugin": "test-crash", "params": ["abort": true]])
        #expect(crashed.status == 500, "\(crashed.text)")
        #expect(error(crashed)["code"] as? String == "plugin_crashed")
        let message = error(crashed)["message"] as? String ?? ""
        #expect(message.contains("test-crash") && message.contains("signal \(SIGABRT)"), "\(message)")
        #expect(try helper.admin(s, "GET", "/v1/variants/crashy").status == 404)
        #expect(try helper.complete(s, model: nil).status == 200, "the server keeps serving")

        // The same plugin, not asked to crash: published, its provenance names it.
        let fine = try helper.admin(s, "POST", "/v1/variants", ["name": "crashy", "plugin": "test-crash"])
        #expect(fine.status == 201, "\(fine.text)")
        let source = (fine.json["provenance"] as? [[String: Any]])?.first
        #expect(source?["origin"] as? String == "plugin:test-crash")
        #expect((source?["metadata"] as? [String: Any])?["note"] as? String == "empty delta")
        // A replacement that crashes leaves the published variant serving.
        let replaced = try helper.admin(s, "PUT", "/v1/variants/crashy", ["plugin": "test-crash", "params": ["abort": true]])
        #expect(replaced.status == 500 && error(replaced)["code"] as? String == "plugin_crashed", "\(replaced.text)")
        let served = try helper.complete(s, model: "crashy")
        #expect(served.status == 200 && served.json["model"] as? String == "crashy")
        // Refusals from the child keep their status and text.
        let refused = try helper.admin(s, "POST", "/v1/variants", ["name": "other", "plugin": "random-sparse", "params": ["density": 2]])
        #expect(refused.status == 400 && error(refused)["code"] as? String == "plugin_failed", "\(refused.text)")
        #expect(leftovers(s).isEmpty, "\(leftovers(s))")
    }

    /// A `DELETE` that arrives while a `PUT` (or the `POST`) of the same name is building
    /// cancels that build: it publishes nothing and answers 409, and the name stays deleted.
    @Test func deleteWinsOverABuildInFlight() throws {
        let s = try server()
        var stopped = false
        defer { if !stopped { #expect(s.stop()) } }
        #expect(try helper.admin(s, "POST", "/v1/variants", ["name": "held", "plugin": "test-crash"]).status == 201)

        func heldBuild(_ method: String, _ path: String, _ body: [String: Any], hold: String) throws -> HTTPResponse? {
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) let body = body
            nonisolated(unsafe) var response: HTTPResponse?
            DispatchQueue.global().async {
                response = try? helper.admin(s, method, path, body)
                done.signal()
            }
            #expect(waitFor(hold + ".started"), "the plugin never started")
            let deleted = try helper.admin(s, "DELETE", "/v1/variants/held")
            #expect(deleted.status == 200, "\(deleted.text)")
            #expect(deleted.json["build_cancelled"] as? Bool == true)
            // Released too, in case the child outlived the DELETE: it still must not publish.
            _ = FileManager.default.createFile(atPath: hold, contents: nil)
            done.wait()
            return response
        }

        let hold = helper.deltaDir + "/hold-put"
        let put = try heldBuild("PUT", "/v1/variants/held", ["plugin": "test-crash", "params": ["hold": hold]], hold: hold)
        #expect(put?.status == 409, "\(put?.text ?? "no response")")
        #expect(put.map(error)?["code"] as? String == "variant_deleted")
        #expect(try helper.admin(s, "GET", "/v1/variants/held").status == 404)
        #expect(try helper.complete(s, model: "held").status == 404)

        // A name that only a POST in flight is creating.
        let hold2 = helper.deltaDir + "/hold-post"
        let post = try heldBuild("POST", "/v1/variants", ["name": "held", "plugin": "test-crash", "params": ["hold": hold2]], hold: hold2)
        #expect(post?.status == 409 && post.map(error)?["code"] as? String == "variant_deleted", "\(post?.text ?? "no response")")
        #expect(try helper.admin(s, "GET", "/v1/variants/held").status == 404)
        #expect(try helper.admin(s, "DELETE", "/v1/variants/held").status == 404)

        // A PUT after the DELETE builds anew.
        #expect(try helper.admin(s, "PUT", "/v1/variants/held", ["plugin": "test-crash"]).status == 200)
        #expect(try helper.complete(s, model: "held").json["model"] as? String == "held")
        #expect(leftovers(s).isEmpty, "\(leftovers(s))")
        let folder = s.server.buildDirectory
        stopped = true
        #expect(s.stop())
        #expect(!FileManager.default.fileExists(atPath: folder), "removed at stop")
    }
}
