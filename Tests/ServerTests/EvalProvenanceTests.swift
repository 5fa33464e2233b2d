import Foundation
import Testing
@testable import Evaluation
@testable import Server

/// `graft eval`'s arms against the real server (issue 8): with the admin token a variant is
/// fingerprinted by its content (`GET /v1/variants/{name}`), base by the model's fingerprint, and
/// the result cache is keyed by them, so a variant replaced under the same name never reuses
/// stale answers; without the token a variant is known by name only and not cached.
@Suite struct EvalProvenanceTests {
    let helper = VariantAPITests()

    /// A few greedy chat replies; "correct" is a parity of the reply, so that both arms have results.
    struct Replies: EvalTask {
        let task = BenchmarkTask.gsm8k
        let protocolID = "test/replies/max4"
        let itemIDs = ["one", "two", "three"]
        let itemNote = "three prompts"

        func evaluate(index: Int, model: String, client: OpenAIClient, slot: Int, seed: Int) throws(EvaluationError) -> ItemResult {
            let g = try client.chat(model: model, messages: [Message(role: "user", content: itemIDs[index])], maxTokens: 4,
                                    temperature: 0, seed: seed)
            var r = result(index, model: model, seed: seed, correct: g.text.utf8.count % 2 == 0)
            r.response = g.text
            return r
        }
    }

    @Test func contentFingerprintsKeyTheCache() throws {
        try helper.writeDelta("a.safetensors", scale: 0.5)
        try helper.writeDelta("b.safetensors", scale: -0.5)
        let s = try TestServer { [helper] in $0.adminToken = VariantAPITests.token; $0.deltaDirectory = helper.deltaDir }
        defer { #expect(s.stop()) }
        let bounds: [String: Any] = ["max_abs_value": "inf", "max_relative_norm": "inf"]
        let v = try helper.admin(s, "POST", "/v1/variants", ["name": "v", "delta": "a.safetensors", "bounds": bounds])
        #expect(v.status == 201, "\(v.text)")
        let content = v.json["content_fingerprint"] as? String ?? ""
        #expect(content.hasPrefix("sha256:") && content.count == 71, "\(v.text)")
        #expect(((v.json["provenance"] as? [[String: Any]])?.first?["content_sha256"] as? String)?.hasPrefix("sha256:") == true)
        // The same content under another name has the same fingerprint; merged mode another.
        let twin = try helper.admin(s, "POST", "/v1/variants", ["name": "twin", "delta": "a.safetensors", "bounds": bounds])
        #expect(twin.json["content_fingerprint"] as? String == content)
        let merged = try helper.admin(s, "POST", "/v1/variants", ["name": "vm", "delta": "a.safetensors", "bounds": bounds, "mode": "merged"])
        #expect(merged.status == 201 && merged.json["content_fingerprint"] as? String != content)
        let modelFingerprint = try helper.admin(s, "GET", "/v1/variants").json["fingerprint"] as? String
        #expect(modelFingerprint?.isEmpty == false)

        let url = "http://127.0.0.1:\(s.port)"
        let client = try OpenAIClient(server: url, adminToken: VariantAPITests.token)
        let arms = try ABRun.resolveArms(["base", "v"], client: client)
        #expect(arms[0].fingerprint == modelFingerprint && arms[0].fingerprintSource == "model" && arms[0].cacheable)
        #expect(arms[1].fingerprint == content && arms[1].fingerprintSource == "content" && arms[1].cacheable && arms[1].note == nil)
        let recorded = try JSONSerialization.jsonObject(with: Data(arms[1].provenance.utf8)) as? [String: Any]
        #expect((recorded?["variant"] as? [String: Any])?["content_fingerprint"] as? String == content)

        let dir = NSTemporaryDirectory() + "graft-eval-provenance-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func run(_ arms: [Arm]) throws -> [[ItemResult]] {
            try ABRun(client: client, arms: arms, cache: try ResultCache(directory: dir + "/cache"), seeds: [0], workers: 1) { _ in }
                .run(Replies(), items: try JSONLWriter(path: dir + "/items.jsonl"))
        }
        let first = try run(arms)
        #expect(first.allSatisfy { $0.allSatisfy { $0.cached == nil } })
        let second = try run(arms)
        #expect(second.allSatisfy { $0.allSatisfy { $0.cached == true } }, "same weights: from the cache")

        // Replaced under the same name: a new fingerprint, fresh answers for it; base still cached.
        #expect(try helper.admin(s, "PUT", "/v1/variants/v", ["delta": "b.safetensors", "bounds": bounds]).status == 200)
        let replaced = try ABRun.resolveArms(["base", "v"], client: client)
        #expect(replaced[0].fingerprint == arms[0].fingerprint && replaced[1].fingerprint != content)
        let third = try run(replaced)
        #expect(third[0].allSatisfy { $0.cached == true })
        #expect(third[1].allSatisfy { $0.cached == nil }, "never the replaced variant's answers")
        #expect(third[1].map(\.response) != first[1].map(\.response), "the replacement answers differently")
        // Back to the first delta: the same content, so its answers are valid again.
        #expect(try helper.admin(s, "PUT", "/v1/variants/v", ["delta": "a.safetensors", "bounds": bounds]).status == 200)
        #expect(try ABRun.resolveArms(["v"], client: client)[0].fingerprint == content)

        // Without the token: known by name only, not cached unless asked; a refused token is an error.
        let anonymous = try OpenAIClient(server: url)
        let byName = try ABRun.resolveArms(["base", "v"], client: anonymous)
        #expect(byName.allSatisfy { $0.fingerprintSource == "name" && !$0.cacheable && $0.note?.contains("no admin token") == true })
        #expect(try ABRun.resolveArms(["v"], client: anonymous, cacheByName: true)[0].cacheable)
        let fourth = try run(byName)
        #expect(fourth.allSatisfy { $0.allSatisfy { $0.cached == nil } })
        #expect(throws: EvaluationError.self) {
            try ABRun.resolveArms(["v"], client: try OpenAIClient(server: url, adminToken: "not-the-token"))
        }
    }

    /// The same weights served with bf16 activations or a bf16 KV cache answer differently: the
    /// model cards say so (`numerics`) and the arms' fingerprints, the cache's keys, differ from
    /// the default server's (which stay the bare fingerprints, as the test above checks).
    @Test func servingNumericsKeyTheCache() throws {
        try helper.writeDelta("a.safetensors", scale: 0.5)
        let s = try TestServer { [helper] in
            $0.adminToken = VariantAPITests.token; $0.deltaDirectory = helper.deltaDir
            $0.activations = .bf16; $0.kvCacheType = .bf16
        }
        defer { #expect(s.stop()) }
        let bounds: [String: Any] = ["max_abs_value": "inf", "max_relative_norm": "inf"]
        let v = try helper.admin(s, "POST", "/v1/variants", ["name": "v", "delta": "a.safetensors", "bounds": bounds])
        #expect(v.status == 201, "\(v.text)")
        let content = v.json["content_fingerprint"] as? String ?? ""
        let modelFingerprint = try helper.admin(s, "GET", "/v1/variants").json["fingerprint"] as? String ?? ""
        let client = try OpenAIClient(server: "http://127.0.0.1:\(s.port)", adminToken: VariantAPITests.token)
        let cards = try client.models()
        #expect(cards.allSatisfy { ($0["numerics"] as? [String: String]) == ["activations": "bf16", "kv_cache_dtype": "bf16"] }, "\(cards)")
        let arms = try ABRun.resolveArms(["base", "v"], client: client)
        let suffix = "+numerics:activations=bf16,kv_cache_dtype=bf16"
        #expect(arms[0].fingerprint == modelFingerprint + suffix && arms[0].cacheable)
        #expect(arms[1].fingerprint == content + suffix && arms[1].cacheable)
    }
}
