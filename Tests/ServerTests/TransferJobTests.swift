import Foundation
import Testing
import Transfer
@testable import Server

/// `POST /v1/transfers`: a plugin runs in a child `graft delta build` (built beside the test
/// bundle), writes its delta into the delta directory, and the server publishes it.
@Suite struct TransferJobTests {
    @Test func transferJobsPublishOrFailCleanly() throws {
        let graft = PluginHost.executableDirectory + "/graft"
        guard FileManager.default.isExecutableFile(atPath: graft) else {
            Issue.record("no graft executable at \(graft) (swift build builds it)")
            return
        }
        let helper = VariantAPITests()
        let s = try TestServer { $0.adminToken = VariantAPITests.token; $0.deltaDirectory = helper.deltaDir }
        defer { #expect(s.stop()) }
        func wait(_ id: String) throws -> [String: Any] { try helper.waitForJob(s, id, timeout: 60) }
        let started = try helper.admin(s, "POST", "/v1/transfers", ["name": "rs", "plugin": "random-sparse", "params": ["seed": 5, "density": 0.2]])
        #expect(started.status == 202, "\(started.text)")
        let id = started.json["id"] as? String ?? ""
        let done = try wait(id)
        #expect(done["status"] as? String == "succeeded", "\(done)")
        #expect(done["progress"] as? Double == 1)
        let r = try helper.complete(s, model: "rs")
        #expect(r.status == 200 && r.json["model"] as? String == "rs")
        let provenance = try helper.admin(s, "GET", "/v1/variants/rs").json["provenance"] as? [[String: Any]]
        #expect((provenance?.first?["metadata"] as? [String: Any])?["plugin"] as? String == "random-sparse")

        let bad = try helper.admin(s, "POST", "/v1/transfers", ["name": "bad", "plugin": "random-sparse", "params": ["density": 3]])
        #expect(bad.status == 202)
        let failed = try wait(bad.json["id"] as? String ?? "")
        #expect(failed["status"] as? String == "failed")
        #expect((failed["error"] as? String)?.contains("density must be in (0, 1]") == true, "\(failed)")
        #expect(try helper.admin(s, "GET", "/v1/models/bad").status == 404)
        #expect(try helper.admin(s, "GET", "/v1/jobs/job-999").status == 404)
        #expect(try helper.admin(s, "POST", "/v1/transfers", ["name": "x", "plugin": "../evil"]).status == 400)
        #expect(try helper.admin(s, "GET", "/v1/jobs/\(id)", token: nil).status == 401)
        #expect(try helper.complete(s, model: "base").status == 200)
    }

    /// A job's plugin that crashes fails the job only; a DELETE of the job's variant cancels the job.
    @Test func crashedOrDeletedJobsPublishNothing() throws {
        let helper = VariantAPITests()
        let s = try TestServer { $0.adminToken = VariantAPITests.token; $0.deltaDirectory = helper.deltaDir }
        defer { #expect(s.stop()) }
        func wait(_ id: String) throws -> [String: Any] { try helper.waitForJob(s, id, poll: 0.02) }
        let crash = try helper.admin(s, "POST", "/v1/transfers", ["name": "c", "plugin": "test-crash", "params": ["abort": true]])
        #expect(crash.status == 202)
        let crashed = try wait(crash.json["id"] as? String ?? "")
        #expect(crashed["status"] as? String == "failed")
        #expect((crashed["error"] as? String)?.contains("signal \(SIGABRT)") == true, "\(crashed)")

        let hold = helper.deltaDir + "/hold-job"
        let held = try helper.admin(s, "POST", "/v1/transfers", ["name": "j", "plugin": "test-crash", "params": ["hold": hold]])
        #expect(held.status == 202)
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: hold + ".started") && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        let deleted = try helper.admin(s, "DELETE", "/v1/variants/j")
        #expect(deleted.status == 200 && deleted.json["build_cancelled"] as? Bool == true, "\(deleted.text)")
        _ = FileManager.default.createFile(atPath: hold, contents: nil)
        let cancelled = try wait(held.json["id"] as? String ?? "")
        #expect(cancelled["status"] as? String == "cancelled", "\(cancelled)")
        #expect((cancelled["error"] as? String)?.contains("DELETE /v1/variants/j") == true)
        #expect(try helper.admin(s, "GET", "/v1/variants/j").status == 404)
        #expect(try helper.complete(s, model: nil).status == 200)
    }
}
