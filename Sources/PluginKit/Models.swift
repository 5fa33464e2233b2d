import Foundation

// The 1.1 services in Swift: model handles (the target, sources by configured name), any
// tensor, tokenize and chat format per model, the traced forward, the host's parallel_for and
// gemm. Every wrapper checks the host table's struct_size before reading a 1.1 field.

extension Host {
    /// The smallest host table PluginKit runs on: every field up to delta_last_error (1.0).
    static let minimumSize = UInt32(MemoryLayout<graft_host>.offset(of: \graft_host.delta_last_error)! + MemoryLayout<UnsafeRawPointer>.size)

    /// The host's ABI version as "major.minor".
    public var abiVersion: String { "\(table.pointee.abi_version >> 16).\(table.pointee.abi_version & 0xFFFF)" }

    /// The C table, for what the wrappers do not cover (check struct_size first).
    public var rawTable: UnsafePointer<graft_host> { table }

    /// Whether the host's table has `field` (its struct_size covers it) and it is non-NULL.
    public func offers<T>(_ field: KeyPath<graft_host, T?>) -> Bool {
        (try? service(field, "")) != nil
    }

    /// A service's function pointer, read only when the host's struct_size covers it.
    func service<T>(_ field: KeyPath<graft_host, T?>, _ name: String) throws -> T {
        guard let offset = MemoryLayout<graft_host>.offset(of: field),
              offset + MemoryLayout<T?>.size <= Int(table.pointee.struct_size) else {
            throw PluginError("this host speaks plugin ABI \(abiVersion) and has no \(name) (it needs a 1.1 host)")
        }
        guard let f = UnsafeRawPointer(table).load(fromByteOffset: offset, as: T?.self) else {
            throw PluginError("this host does not offer \(name)")
        }
        return f
    }

    /// The last 1.1 error as a PluginError (what the host said, or `fallback`).
    func lastError(_ fallback: String) -> PluginError {
        PluginError(lastErrorMessage ?? fallback)
    }

    /// What the host's last_error says, when it offers one and has something to say.
    var lastErrorMessage: String? {
        (try? service(\.last_error, "last_error"))?(data).map { String(cString: $0) }
    }

    /// The model the delta is for.
    public func targetModel() throws -> Model {
        let f = try service(\.target_model, "target_model")
        guard let handle = f(data) else { throw lastError("target_model failed") }
        return Model(host: self, handle: handle)
    }

    /// A model by its configured name (`--source NAME=DIR`).
    public func openModel(_ name: String) throws -> Model {
        let f = try service(\.open_model, "open_model")
        guard let handle = f(data, name) else { throw lastError("no model named '\(name)'") }
        return Model(host: self, handle: handle)
    }

    /// Runs body over [0, count) split across the host's worker pool; body runs concurrently
    /// on several threads, each call with its own range, and every index is covered once.
    public func parallelFor(_ count: Int, _ body: (Range<Int>) -> Void) throws {
        let f = try service(\.parallel_for, "parallel_for")
        final class Box {
            let body: (Range<Int>) -> Void
            init(_ body: @escaping (Range<Int>) -> Void) { self.body = body }
        }
        try withoutActuallyEscaping(body) { escaping in
            let box = Box(escaping)
            let status = withExtendedLifetime(box) {
                f(data, count, { context, begin, end in
                    Unmanaged<Box>.fromOpaque(context!).takeUnretainedValue().body(begin..<end)
                }, Unmanaged.passUnretained(box).toOpaque())
            }
            guard status == 0 else { throw lastError("parallel_for failed") }
        }
    }

    /// Row-major C = alpha·op(A)·op(B) + beta·C through the host's OpenBLAS.
    public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>?, lda: Int, b: UnsafePointer<Float>?, ldb: Int,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>?, ldc: Int) throws {
        let f = try service(\.gemm, "gemm")
        guard f(data, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0 else {
            throw lastError("gemm failed")
        }
    }

    /// The same over arrays: A is [m, k] ([k, m] when transA), B is [k, n] ([n, k] when
    /// transB), C is [m, n], all packed.
    public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                     _ a: [Float], _ b: [Float], beta: Float = 0, _ c: inout [Float]) throws {
        guard a.count == m * k, b.count == k * n, c.count == m * n else {
            throw PluginError("gemm: A has \(a.count) values (\(m * k) expected), B \(b.count) (\(k * n)), C \(c.count) (\(m * n))")
        }
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try c.withUnsafeMutableBufferPointer { pc in
                    try gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                             a: pa.baseAddress, lda: max(1, transA ? m : k), b: pb.baseAddress, ldb: max(1, transB ? k : n),
                             beta: beta, c: pc.baseAddress, ldc: max(1, n))
                }
            }
        }
    }
}

/// Which traces a forward returns.
public struct ForwardTraces: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let logits = ForwardTraces(rawValue: 1 << 0)
    public static let residualPreAttention = ForwardTraces(rawValue: 1 << 1)
    public static let residualPreFFN = ForwardTraces(rawValue: 1 << 2)
    public static let finalHidden = ForwardTraces(rawValue: 1 << 3)
    public static let ffnCoefficients = ForwardTraces(rawValue: 1 << 4)
    public static let attentionMix = ForwardTraces(rawValue: 1 << 5)
    public static let attentionWeights = ForwardTraces(rawValue: 1 << 6)
    public static let all: ForwardTraces = [.logits, .residualPreAttention, .residualPreFFN, .finalHidden,
                                            .ffnCoefficients, .attentionMix, .attentionWeights]
}

/// What a traced forward returned (graft_forward_request's layouts; an array is empty when
/// its trace was not asked for). P = positions.count, T = tokenCount.
public struct ForwardResult {
    public let positions: [Int]
    public let tokenCount: Int
    public let dimensions: ModelDimensions
    public var logits: [Float] = []                  // [P, vocab]
    public var residualPreAttention: [Float] = []    // [L, P, d]
    public var residualPreFFN: [Float] = []          // [L, P, d]
    public var finalHidden: [Float] = []             // [P, d]
    public var ffnCoefficients: [Float] = []         // [L, P, f]
    public var attentionMix: [Float] = []            // [L, P, H·h]
    public var attentionWeights: [Float] = []        // [L, H, P, T]
}

/// A model's sizes, from its normalised config.json.
public struct ModelDimensions: Sendable, Equatable {
    public let layers: Int
    public let hidden: Int
    public let intermediate: Int
    public let heads: Int
    public let headDim: Int
    public let vocab: Int
}

/// A model the host opened for this run (graft_model *): valid until the run returns.
public struct Model {
    public let host: Host
    public let handle: OpaquePointer

    /// config.json as the host normalised it.
    public func config() throws -> [String: Any] {
        let f = try host.service(\.model_config, "model_config")
        guard let p = f(handle),
              let object = (try? JSONSerialization.jsonObject(with: Data(String(cString: p).utf8))) as? [String: Any] else {
            throw host.lastError("model_config failed")
        }
        return object
    }

    public func fingerprint() throws -> String {
        let f = try host.service(\.model_fingerprint_of, "model_fingerprint_of")
        guard let p = f(handle) else { throw host.lastError("model_fingerprint_of failed") }
        return String(cString: p)
    }

    public func dimensions() throws -> ModelDimensions {
        let c = try config()
        func int(_ key: String) throws -> Int {
            guard let v = c[key] as? Int else { throw PluginError("config.json has no integer \(key)") }
            return v
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        return ModelDimensions(layers: try int("num_hidden_layers"), hidden: hidden, intermediate: try int("intermediate_size"),
                               heads: heads, headDim: (c["head_dim"] as? Int) ?? hidden / max(heads, 1), vocab: try int("vocab_size"))
    }

    /// A tensor's shape: [rows, cols] for a matrix, [n, 1] for a vector.
    public func shape(_ name: String) throws -> (rows: Int, cols: Int) {
        let f = try host.service(\.model_tensor_shape, "model_tensor_shape")
        var r: Int64 = 0, c: Int64 = 0
        guard f(handle, name, &r, &c) == 0 else { throw host.lastError("no tensor \(name)") }
        return (Int(r), Int(c))
    }

    /// Any named tensor widened to f32, row-major.
    public func tensor(_ name: String) throws -> (values: [Float], rows: Int, cols: Int) {
        let (rows, cols) = try shape(name)
        let f = try host.service(\.model_read_tensor, "model_read_tensor")
        var out = [Float](repeating: 0, count: rows * cols)
        let status = out.withUnsafeMutableBufferPointer { f(handle, name, $0.baseAddress, $0.count) }
        guard status == 0 else { throw host.lastError("reading \(name) failed") }
        return (out, rows, cols)
    }

    public func tokenize(_ text: String, addSpecialTokens: Bool = false) throws -> [Int] {
        let f = try host.service(\.model_tokenize, "model_tokenize")
        var count = 0
        guard f(handle, text, addSpecialTokens ? 1 : 0, nil, 0, &count) == 0 else { throw host.lastError("model_tokenize failed") }
        var out = [Int32](repeating: 0, count: count)
        let status = out.withUnsafeMutableBufferPointer { f(handle, text, addSpecialTokens ? 1 : 0, $0.baseAddress, $0.count, &count) }
        guard status == 0 else { throw host.lastError("model_tokenize failed") }
        return out.map(Int.init)
    }

    /// The model's chat template over messages given as JSON text.
    public func chatFormat(json messages: String, addGenerationPrompt: Bool = true) throws -> String {
        let f = try host.service(\.model_chat_format, "model_chat_format")
        guard let p = f(handle, messages, addGenerationPrompt ? 1 : 0) else { throw host.lastError("model_chat_format failed") }
        return String(cString: p)
    }

    /// The same over (role, content) pairs.
    public func chatFormat(_ messages: [(role: String, content: String)], addGenerationPrompt: Bool = true) throws -> String {
        let objects = messages.map { ["role": $0.role, "content": $0.content] }
        let data = try JSONSerialization.data(withJSONObject: objects)
        return try chatFormat(json: String(decoding: data, as: UTF8.self), addGenerationPrompt: addGenerationPrompt)
    }

    /// A forward pass over tokens from position 0 with the traces asked for at `positions`
    /// (ascending; nil: every position).
    public func forward(_ tokens: [Int], positions: [Int]? = nil, traces: ForwardTraces = .logits) throws -> ForwardResult {
        let f = try host.service(\.model_forward, "model_forward")
        let dims = try dimensions()
        let chosen = positions ?? Array(0..<tokens.count)
        let P = chosen.count, T = tokens.count, L = dims.layers
        var result = ForwardResult(positions: chosen, tokenCount: T, dimensions: dims)
        let sizes: [(ForwardTraces, Int)] = [
            (.logits, P * dims.vocab), (.residualPreAttention, L * P * dims.hidden), (.residualPreFFN, L * P * dims.hidden),
            (.finalHidden, P * dims.hidden), (.ffnCoefficients, L * P * dims.intermediate),
            (.attentionMix, L * P * dims.heads * dims.headDim), (.attentionWeights, L * dims.heads * P * T),
        ]
        var buffers: [Int: UnsafeMutableBufferPointer<Float>] = [:]
        defer { for b in buffers.values { b.deallocate() } }
        for (i, (trace, size)) in sizes.enumerated() where traces.contains(trace) {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(size, 1))
            b.initialize(repeating: 0)
            buffers[i] = b
        }
        var request = graft_forward_request()
        request.struct_size = UInt32(MemoryLayout<graft_forward_request>.size)
        func slot(_ i: Int) -> (UnsafeMutablePointer<Float>?, Int) { (buffers[i]?.baseAddress, buffers[i] == nil ? 0 : sizes[i].1) }
        (request.logits, request.logits_capacity) = slot(0)
        (request.residual_pre_attention, request.residual_pre_attention_capacity) = slot(1)
        (request.residual_pre_ffn, request.residual_pre_ffn_capacity) = slot(2)
        (request.final_hidden, request.final_hidden_capacity) = slot(3)
        (request.ffn_coefficients, request.ffn_coefficients_capacity) = slot(4)
        (request.attention_mix, request.attention_mix_capacity) = slot(5)
        (request.attention_weights, request.attention_weights_capacity) = slot(6)
        let ids = tokens.map { Int32(truncatingIfNeeded: $0) }
        let pos = chosen.map { Int32(truncatingIfNeeded: $0) }
        let status = ids.withUnsafeBufferPointer { t in
            pos.withUnsafeBufferPointer { p in
                request.positions = p.baseAddress
                request.position_count = p.count
                return f(handle, t.baseAddress, t.count, &request)
            }
        }
        guard status == 0 else { throw host.lastError("model_forward failed") }
        func array(_ i: Int) -> [Float] { buffers[i].map { Array($0.prefix(sizes[i].1)) } ?? [] }
        result.logits = array(0)
        result.residualPreAttention = array(1)
        result.residualPreFFN = array(2)
        result.finalHidden = array(3)
        result.ffnCoefficients = array(4)
        result.attentionMix = array(5)
        result.attentionWeights = array(6)
        return result
    }
}
