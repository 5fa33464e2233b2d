import Foundation
import LanguageModel
import SafeTensors
import Testing
import Transfer
@testable import Server

/// The admin API for variants over loopback, on the tiny fixture model: auth, publication,
/// choice by `model`, hostile deltas, pinning across replace and delete.
@Suite struct VariantAPITests {
    static let token = "s3cret-token"
    let deltaDir: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("graft-variant-api-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    /// A strong dense delta on every layer's down projection (so greedy text changes), scaled.
    func writeDelta(_ name: String, scale: Float, fingerprint: String? = nil) throws {
        let weights = try ModelWeights(config: ModelConfig.load(directory: tinyModel), storage: SafeTensorsModel(directory: tinyModel))
        let builder = VariantBuilder(weights: weights, deltaDirectory: nil)
        var entries: [String: [DeltaEntry]] = [:]
        for layer in 0..<weights.config.layers {
            let t = LayerModule.down.tensorName(layer: layer)
            let (out, inDim) = builder.shapes[t]!
            entries[t] = [.dense(values: (0..<(out * inDim)).map { i in scale * Float((i * 7919) % 13) / 13 - scale / 2 })]
        }
        let delta = Delta(entries: entries, metadata: DeltaMetadata(modelFingerprint: fingerprint ?? builder.fingerprint, strategy: "test"))
        try DeltaFile.write(delta, shapes: builder.shapes, to: deltaDir + "/" + name)
    }

    func admin(_ s: TestServer, _ method: String, _ path: String, _ json: [String: Any]? = nil, token: String? = token) throws -> HTTPResponse {
        let c = try s.client()
        defer { c.close() }
        let body = try json.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        try c.send(method, path, body: body, headers: token.map { ["Authorization: Bearer \($0)"] } ?? [])
        return try c.readResponse()
    }

    func complete(_ s: TestServer, model: String?, tokens: Int = 8) throws -> HTTPResponse {
        var body: [String: Any] = ["prompt": "hello", "max_tokens": tokens, "temperature": 0, "ignore_eos": true]
        if let model { body["model"] = model }
        return try s.post("/v1/completions", body)
    }

    /// Polls `GET /v1/jobs/{id}` until the job is no longer running; its last state ([:] if it
    /// was still running at the deadline).
    func waitForJob(_ s: TestServer, _ id: String, timeout: TimeInterval = 120, poll: TimeInterval = 0.05) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let job = try admin(s, "GET", "/v1/jobs/\(id)").json
            if job["status"] as? String != "running" { return job }
            Thread.sleep(forTimeInterval: poll)
        }
        return [:]
    }

    func text(_ r: HTTPResponse) -> String? { ((r.json["choices"] as? [[String: Any]])?.first)?["text"] as? String }

    @Test func adminRoutesNeedTheToken() throws {
        let off = try TestServer()
        defer { #expect(off.stop()) }
        #expect(try admin(off, "GET", "/v1/variants").status == 403, "no token configured: admin is off")
        let s = try TestServer { $0.adminToken = Self.token + "\n"; $0.deltaDirectory = deltaDir }
        defer { #expect(s.stop()) }
        let missing = try admin(s, "GET", "/v1/variants", token: nil)
        #expect(missing.status == 401)
        #expect((missing.json["error"] as? [String: Any])?["type"] as? String == "authentication_error")
        #expect(try admin(s, "GET", "/v1/variants", token: "s3cret-tokem").status == 403)
        #expect(try admin(s, "GET", "/v1/variants", token: "s3cret").status == 403)
        #expect(try admin(s, "POST", "/v1/variants", ["name": "x", "delta": "d"], token: "").status == 401)
        #expect(try admin(s, "GET", "/v1/variants").status == 200)
        #expect(AdminAuth.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!AdminAuth.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
    }

    @Test func publishServeListAndDelete() throws {
        try writeDelta("strong.safetensors", scale: 0.5)
        let s = try TestServer { $0.adminToken = Self.token; $0.deltaDirectory = deltaDir }
        defer { #expect(s.stop()) }
        let base = try complete(s, model: nil)
        #expect(base.status == 200)

        let bounds: [String: Any] = ["max_abs_value": "inf", "max_relative_norm": "inf"]
        let created = try admin(s, "POST", "/v1/variants", ["name": "v1", "delta": "strong.safetensors", "bounds": bounds])
        #expect(created.status == 201, "\(created.text)")
        #expect(created.json["id"] as? String == "v1")
        #expect(((created.json["provenance"] as? [[String: Any]])?.first?["metadata"] as? [String: Any])?["strategy"] as? String == "test")
        #expect(try admin(s, "POST", "/v1/variants", ["name": "v1", "delta": "strong.safetensors", "bounds": bounds]).status == 409)

        let ids = ((try s.request("GET", "/v1/models").json["data"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
        #expect(ids == ["base", "v1"])
        #expect(try s.request("GET", "/v1/models/v1").status == 200)
        let listed = try admin(s, "GET", "/v1/variants")
        #expect((listed.json["data"] as? [[String: Any]])?.count == 1)
        #expect(try admin(s, "GET", "/v1/variants/v1").json["mode"] as? String == "unmerged")

        let v = try complete(s, model: "v1")
        #expect(v.status == 200)
        #expect(v.json["model"] as? String == "v1")
        #expect(text(v) != text(base), "the delta changes greedy text")
        #expect(text(try complete(s, model: "base")) == text(base), "base is untouched")
        // Merged mode gives the same text as unmerged.
        let merged = try admin(s, "POST", "/v1/variants", ["name": "v1m", "delta": "strong.safetensors", "bounds": bounds, "mode": "merged"])
        #expect(merged.status == 201, "\(merged.text)")
        #expect(text(try complete(s, model: "v1m")) == text(v))
        // The delta values' element type: auto is f32 over this f32 base; bf16 on request.
        #expect(created.json["delta_dtype"] as? String == "f32")
        let half = try admin(s, "POST", "/v1/variants", ["name": "v1h", "delta": "strong.safetensors", "bounds": bounds, "delta_dtype": "bf16"])
        #expect(half.status == 201, "\(half.text)")
        #expect(half.json["delta_dtype"] as? String == "bf16")
        #expect((half.json["resident_bytes"] as? Int ?? 0) * 2 == (created.json["resident_bytes"] as? Int ?? 0))
        #expect(try complete(s, model: "v1h").status == 200)
        #expect(try admin(s, "DELETE", "/v1/variants/v1h").status == 200)
        #expect(try admin(s, "POST", "/v1/variants", ["name": "v1x", "delta": "strong.safetensors", "delta_dtype": "f8"]).status == 400)

        // Default routing.
        #expect(try admin(s, "POST", "/v1/variants/v1/default").status == 200)
        let byDefault = try complete(s, model: nil)
        #expect(byDefault.json["model"] as? String == "v1")
        #expect(text(byDefault) == text(v))
        #expect(try admin(s, "POST", "/v1/variants/base/default").status == 200)
        #expect(try complete(s, model: nil).json["model"] as? String == "base")

        // Reload (same file) and delete.
        #expect(try admin(s, "PUT", "/v1/variants/v1").status == 200)
        #expect(text(try complete(s, model: "v1")) == text(v))
        #expect(try admin(s, "DELETE", "/v1/variants/v1").status == 200)
        #expect(try admin(s, "DELETE", "/v1/variants/v1").status == 404)
        #expect(try complete(s, model: "v1").status == 404)
        #expect(try s.request("GET", "/metrics").text.contains("graft_variants_count 1"))
    }

    @Test func hostileRequestsAreRefusedAndBaseKeepsServing() throws {
        try writeDelta("strong.safetensors", scale: 0.5)
        try writeDelta("huge.safetensors", scale: 100)
        try writeDelta("other.safetensors", scale: 0.01, fingerprint: "fnv1a64:0123456789abcdef")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: deltaDir + "/junk.safetensors"))
        let s = try TestServer { $0.adminToken = Self.token; $0.deltaDirectory = deltaDir }
        defer { #expect(s.stop()) }
        func refused(_ body: [String: Any], _ needle: String) throws {
            let r = try admin(s, "POST", "/v1/variants", body)
            #expect(r.status == 400, "\(body): \(r.status) \(r.text)")
            let message = (r.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains(needle), "\(body): \(message)")
        }
        try refused(["name": "a", "delta": "/etc/passwd"], "must be relative")
        try refused(["name": "a", "delta": "../x.safetensors"], "leaves the delta directory")
        try refused(["name": "a", "delta": "missing.safetensors"], "no such file")
        try refused(["name": "a", "delta": "junk.safetensors"], "unreadable")
        try refused(["name": "a", "delta": "other.safetensors"], "another model")
        try refused(["name": "a", "delta": "huge.safetensors"], "exceeds the bound")
        try refused(["name": "base", "delta": "strong.safetensors"], "name must be")
        try refused(["name": "a/b", "delta": "strong.safetensors"], "name must be")
        try refused(["delta": "strong.safetensors"], "name is required")
        try refused(["name": "a", "plugin": "../zero-delta"], "plugin must be a plugin name")
        try refused(["name": "a", "plugin": "/tmp/libx.so"], "plugin must be a plugin name")
        try refused(["name": "a", "plugin": "zero-delta", "delta": "strong.safetensors"], "not both")
        try refused(["name": "a", "plugin": "test-bad-abi"], "ABI 99.0")
        try refused(["name": "a", "plugin": "random-sparse", "params": ["density": 2]], "density must be in (0, 1]")
        try refused(["name": "a", "plugin": "random-sparse", "params": ["scale": 1000, "density": 1]], "exceeds the bound")
        try refused(["name": "a", "plugin": "nope"], "no libnope")
        try refused(["name": "a", "delta": "strong.safetensors", "mode": "fused"], "mode")
        #expect(try admin(s, "GET", "/v1/variants/nope").status == 404)
        #expect(try admin(s, "PUT", "/v1/variants/nope").status == 404)
        #expect(try admin(s, "POST", "/v1/variants/nope/default").status == 404)
        #expect(try admin(s, "PATCH", "/v1/variants").status == 405)
        #expect(try complete(s, model: nil).status == 200)
        #expect((try s.request("GET", "/v1/models").json["data"] as? [[String: Any]])?.count == 1)
    }

    /// A request pins the variant it was admitted with: deleting or replacing the name while
    /// it runs changes nothing under it.
    @Test func runningRequestsKeepTheirVariant() throws {
        try writeDelta("a.safetensors", scale: 0.5)
        try writeDelta("b.safetensors", scale: -0.5)
        let s = try TestServer { $0.adminToken = Self.token; $0.deltaDirectory = deltaDir; $0.stepDelay = 0.01 }
        defer { #expect(s.stop()) }
        let bounds: [String: Any] = ["max_abs_value": "inf", "max_relative_norm": "inf"]
        #expect(try admin(s, "POST", "/v1/variants", ["name": "v", "delta": "a.safetensors", "bounds": bounds]).status == 201)
        let expected = text(try complete(s, model: "v", tokens: 100))
        // The running gauge is published after the step's pause: let it settle to 0 first.
        let settle = Date().addingTimeInterval(20)
        while (try s.request("GET", "/health").json["running"] as? Int ?? 0) > 0 && Date() < settle {
            Thread.sleep(forTimeInterval: 0.002)
        }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var pinned: HTTPResponse?
        DispatchQueue.global().async {
            pinned = try? complete(s, model: "v", tokens: 100)
            done.signal()
        }
        // Admitted and running before the name changes under it.
        let deadline = Date().addingTimeInterval(20)
        while (try s.request("GET", "/health").json["running"] as? Int ?? 0) < 1 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.002)
        }
        #expect(try admin(s, "PUT", "/v1/variants/v", ["delta": "b.safetensors", "bounds": bounds]).status == 200)
        let replaced = try complete(s, model: "v", tokens: 4)
        let stillRunning = done.wait(timeout: .now()) == .timedOut
        if !stillRunning { done.signal() }
        #expect(stillRunning, "the pinned request still runs when its variant is replaced and deleted")
        #expect(try admin(s, "DELETE", "/v1/variants/v").status == 200)
        done.wait()
        #expect(pinned?.status == 200)
        #expect(pinned?.json["model"] as? String == "v")
        #expect(pinned.flatMap(text) == expected, "weights never changed under the running sequence")
        #expect(replaced.status == 200)
        #expect(text(replaced) != expected.map { String($0.prefix(text(replaced)?.count ?? 0)) }, "new requests get the replacement")
    }

    /// A variant whose logits are not finite is quarantined: its request fails with a clear
    /// error, later requests for it are served by base and say so, the API and metrics show it.
    @Test func nonFiniteVariantIsQuarantined() throws {
        // Finite values whose products overflow: up_proj's output is ±inf, down_proj's inf − inf.
        let weights = try ModelWeights(config: ModelConfig.load(directory: tinyModel), storage: SafeTensorsModel(directory: tinyModel))
        let builder = VariantBuilder(weights: weights, deltaDirectory: nil)
        let up = LayerModule.up.tensorName(layer: 0)
        let n = builder.shapes[up]!.rows * builder.shapes[up]!.cols
        try DeltaFile.write(Delta(entries: [up: [.dense(values: [Float](repeating: 3e38, count: n))]],
                                  metadata: DeltaMetadata(modelFingerprint: builder.fingerprint, strategy: "overflow")),
                            shapes: builder.shapes, to: deltaDir + "/overflow.safetensors")
        let s = try TestServer { $0.adminToken = Self.token; $0.deltaDirectory = deltaDir }
        defer { #expect(s.stop()) }
        let bounds: [String: Any] = ["max_abs_value": "inf", "max_relative_norm": "inf"]
        #expect(try admin(s, "POST", "/v1/variants", ["name": "bad", "delta": "overflow.safetensors", "bounds": bounds]).status == 201)
        let failed = try complete(s, model: "bad")
        #expect(failed.status == 500, "\(failed.text)")
        #expect((failed.json["error"] as? [String: Any])?["code"] as? String == "variant_quarantined")
        let fallback = try complete(s, model: "bad")
        #expect(fallback.status == 200)
        #expect(fallback.json["model"] as? String == "base")
        #expect(text(fallback) == text(try complete(s, model: "base")))
        #expect(try admin(s, "GET", "/v1/variants/bad").json["quarantined"] as? Bool == true)
        #expect(try s.request("GET", "/metrics").text.contains("graft_variants_quarantined_count 1"))
        // Replacing it publishes a fresh, unquarantined variant.
        try writeDelta("fine.safetensors", scale: 0.01)
        #expect(try admin(s, "PUT", "/v1/variants/bad", ["delta": "fine.safetensors"]).status == 200)
        #expect(try complete(s, model: "bad").json["model"] as? String == "bad")
    }

    @Test func pluginVariants() throws {
        let s = try TestServer { $0.adminToken = Self.token; $0.deltaDirectory = deltaDir }
        defer { #expect(s.stop()) }
        let plugins = try admin(s, "GET", "/v1/plugins")
        #expect(plugins.status == 200)
        let names = (plugins.json["data"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(names.contains("zero-delta") && names.contains("random-sparse"), "\(plugins.text)")
        #expect((plugins.json["refused"] as? [[String: Any]])?.contains { $0["name"] as? String == "test-bad-abi" } == true)
        #expect(try admin(s, "GET", "/v1/plugins", token: nil).status == 401)

        let zero = try admin(s, "POST", "/v1/variants", ["name": "zero", "plugin": "zero-delta"])
        #expect(zero.status == 201, "\(zero.text)")
        #expect(text(try complete(s, model: "zero")) == text(try complete(s, model: "base")))
        let params: [String: Any] = ["seed": 3, "scale": 0.05, "density": 0.5]
        let rs = try admin(s, "POST", "/v1/variants", ["name": "rs", "plugin": "random-sparse", "params": params])
        #expect(rs.status == 201, "\(rs.text)")
        let source = (rs.json["provenance"] as? [[String: Any]])?.first
        #expect(source?["origin"] as? String == "plugin:random-sparse")
        #expect((source?["metadata"] as? [String: Any])?["seed"] as? String == "3")
        let first = try complete(s, model: "rs")
        #expect(first.json["model"] as? String == "rs")
        try writeDelta("small.safetensors", scale: 0.01)
        let viaPlugin = try admin(s, "POST", "/v1/variants", ["name": "df", "plugin": "delta-file", "params": ["path": "small.safetensors"]])
        #expect(viaPlugin.status == 201, "\(viaPlugin.text)")
        let escape = try admin(s, "POST", "/v1/variants", ["name": "df2", "plugin": "delta-file", "params": ["path": "../small.safetensors"]])
        #expect(escape.status == 400 && escape.text.contains("leaves the delta directory"), "\(escape.text)")
        // PUT re-runs the seeded plugin: the same variant.
        #expect(try admin(s, "PUT", "/v1/variants/rs").status == 200)
        #expect(text(try complete(s, model: "rs")) == text(first))
    }

    @Test func preloadedVariantsServeFromTheStart() throws {
        try writeDelta("pre.safetensors", scale: 0.01)
        let s = try TestServer { $0.preloadVariants = [("pre", deltaDir + "/pre.safetensors")] }
        defer { #expect(s.stop()) }
        let r = try complete(s, model: "pre")
        #expect(r.status == 200)
        #expect(r.json["model"] as? String == "pre")
        #expect(throws: (any Error).self) { try TestServer { $0.preloadVariants = [("bad", deltaDir + "/none.safetensors")] } }
        // The element type of a preloaded variant's values, as the admin API reports it.
        let half = try TestServer {
            $0.preloadVariants = [("pre", deltaDir + "/pre.safetensors")]
            $0.preloadDeltaType = .bf16
            $0.adminToken = Self.token
        }
        defer { #expect(half.stop()) }
        let listed = try admin(half, "GET", "/v1/variants")
        #expect(listed.status == 200)
        let entries = listed.json["data"] as? [[String: Any]] ?? []
        #expect(entries.first { $0["id"] as? String == "pre" }?["delta_dtype"] as? String == "bf16", "\(listed.text)")
        #expect(try complete(half, model: "pre").status == 200)
    }
}
