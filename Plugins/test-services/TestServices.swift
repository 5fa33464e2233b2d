import Foundation
import PluginKit

/// `test-services`: calls every 1.1 model service and reports what it got in the delta's
/// metadata (floats as their bit patterns, so that nothing is lost in JSON), for
/// TransferTests to check against the host's own computations. Builds an empty delta.
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "test-services", description: "Test plugin: calls every 1.1 host service and reports the results.", run: run)
}

private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
    PluginKit.run(host, builder, params, error, capacity) { host, params in
        var report = Report(setMetadata: { try host.setMetadata($0, $1) })
        if params["mode"] as? String == "old-host" {
            report.error("old_host_target") { _ = try host.targetModel() }
            report.error("old_host_parallel_for") { try host.parallelFor(4) { _ in } }
            report.error("old_host_gemm") { var c: [Float] = [0]; try host.gemm(m: 1, n: 1, k: 1, [1], [1], &c) }
            try report.flush()
            return
        }
        let target = try host.targetModel()
        try report.set("target_fingerprint", target.fingerprint())
        try report.set("target_config", target.config()["hidden_size"].map { "\($0)" } ?? "")
        try report.set("target_again_same", String(try host.targetModel().handle == target.handle))
        if let name = params["source"] as? String {
            let source = try host.openModel(name)
            try report.set("source_fingerprint", source.fingerprint())
            try report.set("source_again_same", String(try host.openModel(name).handle == source.handle))
            let tokens = (params["tokens"] as? [Int]) ?? [1, 2, 3]
            try report.floats("source_logits", source.forward(tokens, traces: .logits).logits)
        }
        report.error("unknown_model") { _ = try host.openModel("no-such-model") }

        for name in (params["tensors"] as? [String]) ?? [] {
            let t = try target.tensor(name)
            try report.set("tensor_shape." + name, "[\(t.rows), \(t.cols)]")
            try report.floats("tensor." + name, t.values)
        }
        // PluginKit's shared math on a model tensor: the singular values of a weight.
        if let name = params["svd"] as? String {
            let t = try target.tensor(name)
            try report.floats("svd." + name, SVD(t.values, rows: t.rows, cols: t.cols).s)
        }
        report.error("unknown_tensor") { _ = try target.tensor("model.layers.99.nope.weight") }

        if let text = params["text"] as? String {
            try report.ints("tokenize", target.tokenize(text))
            try report.ints("tokenize_special", target.tokenize(text, addSpecialTokens: true))
        }
        if let messages = params["messages"] as? String {
            try report.set("chat", target.chatFormat(json: messages, addGenerationPrompt: true))
            try report.set("chat_no_prompt", target.chatFormat(json: messages, addGenerationPrompt: false))
        }
        for (i, bad) in ((params["bad_messages"] as? [String]) ?? []).enumerated() {
            report.error("chat_error.\(i)") { _ = try target.chatFormat(json: bad) }
        }

        if let tokens = params["tokens"] as? [Int] {
            let positions = params["positions"] as? [Int]
            let r = try target.forward(tokens, positions: positions, traces: .all)
            try report.floats("logits", r.logits)
            try report.floats("residual_pre_attention", r.residualPreAttention)
            try report.floats("residual_pre_ffn", r.residualPreFFN)
            try report.floats("final_hidden", r.finalHidden)
            try report.floats("ffn_coefficients", r.ffnCoefficients)
            try report.floats("attention_mix", r.attentionMix)
            try report.floats("attention_weights", r.attentionWeights)
            try report.floats("logits_only", target.forward(tokens, positions: positions, traces: .logits).logits)
            try report.floats("logits_last", target.forward(tokens, positions: [tokens.count - 1], traces: .logits).logits)
            try capacityChecks(target, tokens: tokens, report: &report)
        }

        // parallel_for: how often each index was visited, and by how many calls.
        let n = (params["parallel_count"] as? Int) ?? 1000
        let visits = UnsafeMutableBufferPointer<Int32>.allocate(capacity: max(n, 1))
        visits.initialize(repeating: 0)
        defer { visits.deallocate() }
        let calls = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        calls.initialize(to: 0)
        defer { calls.deallocate() }
        let lock = NSLock()
        nonisolated(unsafe) let v = visits
        try host.parallelFor(n) { range in
            for i in range { v[i] += 1 }
            lock.lock(); calls.pointee += 1; lock.unlock()
        }
        try report.ints("parallel_visits", visits.map(Int.init))
        try report.set("parallel_calls", "\(calls.pointee)")
        try host.parallelFor(0) { _ in lock.lock(); calls.pointee += 1000; lock.unlock() }
        try report.set("parallel_calls_after_empty", "\(calls.pointee)")

        // gemm on small integer-valued data (exact in f32), every transpose, and one big enough to split.
        for (m, n, k) in [(5, 7, 3), (64, 64, 64)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = gemmInput(m * k, seed: 1), b = gemmInput(k * n, seed: 2)
                var c = gemmInput(m * n, seed: 3)
                try host.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 2, a, b, beta: 0.5, &c)
                try report.floats("gemm.\(m).\(n).\(k).\(ta ? 1 : 0)\(tb ? 1 : 0)", c)
            }
        }
        report.error("gemm_bad_lda") {
            var c = [Float](repeating: 0, count: 4)
            try [Float](repeating: 1, count: 4).withUnsafeBufferPointer { a in
                try c.withUnsafeMutableBufferPointer { cp in
                    try host.gemm(m: 2, n: 2, k: 2, a: a.baseAddress, lda: 1, b: a.baseAddress, ldb: 2, c: cp.baseAddress, ldc: 2)
                }
            }
        }
        try report.flush()
    }
}

/// Values in {-3, …, 3}: products and sums stay exact in f32.
func gemmInput(_ count: Int, seed: Int) -> [Float] {
    (0..<count).map { Float((($0 &* 5 &+ seed &* 13) % 7) - 3) }
}

/// Calls model_forward through the C table with a capacity too small, and with positions out
/// of order: both must fail, naming the problem, and leave every buffer untouched.
func capacityChecks(_ model: Model, tokens: [Int], report: inout Report) throws {
    let forward = model.host.rawTable.pointee.model_forward!
    let dims = try model.dimensions()
    let T = tokens.count
    let ids = tokens.map { Int32($0) }
    var logits = [Float](repeating: .nan, count: T * dims.vocab)
    var hidden = [Float](repeating: .nan, count: dims.layers * T * dims.hidden)
    func call(logitsCapacity: Int, positions: [Int32]?) -> (Int32, Bool) {
        var request = graft_forward_request()
        request.struct_size = UInt32(MemoryLayout<graft_forward_request>.size)
        let status = logits.withUnsafeMutableBufferPointer { l in
            hidden.withUnsafeMutableBufferPointer { h in
                (positions ?? []).withUnsafeBufferPointer { p in
                    request.positions = positions == nil ? nil : p.baseAddress
                    request.position_count = positions?.count ?? 0
                    request.logits = l.baseAddress
                    request.logits_capacity = logitsCapacity
                    request.residual_pre_attention = h.baseAddress
                    request.residual_pre_attention_capacity = h.count
                    return ids.withUnsafeBufferPointer { forward(model.handle, $0.baseAddress, $0.count, &request) }
                }
            }
        }
        return (status, logits.allSatisfy(\.isNaN) && hidden.allSatisfy(\.isNaN))
    }
    func lastError() -> String {
        model.host.rawTable.pointee.last_error.flatMap { $0(model.host.rawTable.pointee.data) }.map { String(cString: $0) } ?? ""
    }
    let (s1, untouched1) = call(logitsCapacity: T * dims.vocab - 1, positions: nil)
    try report.set("capacity_status", "\(s1)")
    try report.set("capacity_error", lastError())
    try report.set("capacity_untouched", "\(untouched1)")
    let (s2, untouched2) = call(logitsCapacity: T * dims.vocab, positions: [1, 0])
    try report.set("positions_status", "\(s2)")
    try report.set("positions_error", lastError())
    try report.set("positions_untouched", "\(untouched2)")
    var small = graft_forward_request()
    small.struct_size = 8
    let s3 = ids.withUnsafeBufferPointer { forward(model.handle, $0.baseAddress, $0.count, &small) }
    try report.set("small_request_status", "\(s3)")
    try report.set("small_request_error", lastError())
}

/// Results as metadata entries (written at the end: the host refuses nothing here).
struct Report {
    let setMetadata: (String, String) throws -> Void
    var entries: [(String, String)] = []

    mutating func set(_ key: String, _ value: String) throws { entries.append((key, value)) }
    mutating func floats(_ key: String, _ values: [Float]) throws { try ints(key, values.map { Int($0.bitPattern) }) }
    mutating func ints(_ key: String, _ values: [Int]) throws { try set(key, "[" + values.map(String.init).joined(separator: ",") + "]") }
    /// Records the error body throws ("" when it does not).
    mutating func error(_ key: String, _ body: () throws -> Void) {
        do { try body(); entries.append((key, "")) } catch { entries.append((key, "\(error)")) }
    }
    func flush() throws { for (k, v) in entries { try setMetadata(k, v) } }
}
