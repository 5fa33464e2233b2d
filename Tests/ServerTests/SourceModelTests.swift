import Foundation
import LanguageModel
import SafeTensors
import Testing
import Transfer
@testable import Server

/// `graft serve --source NAME=DIR`: plugins run by `POST /v1/variants {"plugin"}` (in process)
/// and `POST /v1/transfers` (in a child `graft delta build`, given the same `--source`s) open
/// the configured model by name.
@Suite struct SourceModelTests {
    static let second = repositoryRoot + "/Tests/Fixtures/models/qwen2-tiny-f32"

    static var secondFingerprint: String {
        get throws {
            try ModelWeights(config: try ModelConfig.load(directory: second), storage: SafeTensorsModel(directory: second)).fingerprint
        }
    }

    @Test func pluginsOpenConfiguredSources() throws {
        let graft = PluginHost.executableDirectory + "/graft"
        guard FileManager.default.isExecutableFile(atPath: graft) else {
            Issue.record("no graft executable at \(graft) (swift build builds it)")
            return
        }
        let helper = VariantAPITests()
        let s = try TestServer {
            $0.adminToken = VariantAPITests.token
            $0.deltaDirectory = helper.deltaDir
            $0.sources = [("second", Self.second)]
        }
        defer { #expect(s.stop()) }
        let expected = try Self.secondFingerprint
        func metadata(_ name: String) throws -> [String: Any]? {
            let provenance = try helper.admin(s, "GET", "/v1/variants/\(name)").json["provenance"] as? [[String: Any]]
            return provenance?.first?["metadata"] as? [String: Any]
        }

        let direct = try helper.admin(s, "POST", "/v1/variants", ["name": "svc", "plugin": "test-services", "params": ["source": "second"]])
        #expect(direct.status == 201, "\(direct.text)")
        #expect(try metadata("svc")?["source_fingerprint"] as? String == expected)
        let unknown = try helper.admin(s, "POST", "/v1/variants", ["name": "svc2", "plugin": "test-services", "params": ["source": "third"]])
        #expect(unknown.status == 400 && unknown.text.contains("no model is configured as 'third' (configured: second"), "\(unknown.text)")

        let started = try helper.admin(s, "POST", "/v1/transfers", ["name": "job", "plugin": "test-services", "params": ["source": "second"]])
        #expect(started.status == 202, "\(started.text)")
        let id = started.json["id"] as? String ?? ""
        let job = try helper.waitForJob(s, id)
        #expect(job["status"] as? String == "succeeded", "\(job)")
        #expect(try metadata("job")?["source_fingerprint"] as? String == expected)
    }

    @Test func badSourcesAreRefusedAtStartup() throws {
        #expect(throws: (any Error).self) { try TestServer { $0.sources = [("second", "/nonexistent/model")] } }
        #expect(throws: (any Error).self) { try TestServer { $0.sources = [("a b", Self.second)] } }
    }
}
