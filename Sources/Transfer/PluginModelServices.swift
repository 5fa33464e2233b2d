import COpenBLAS
import Foundation
import GraftPluginABI
import Jinja
import LanguageModel
import TensorCore
import Tokenizers

extension HostTable {
    /// The 1.1 model services (issue 6): target_model, open_model, model_config,
    /// model_fingerprint_of, model_tensor_shape, model_read_tensor, model_tokenize,
    /// model_chat_format, model_forward, parallel_for, gemm. A NULL pointer means the service
    /// is not offered. Failures set last_error (`RunContext.setError`).
    static func installModelServices(_ h: inout graft_host) {
        h.target_model = { data in RunContext.from(data)?.targetModel.handle }
        h.open_model = { data, name in
            guard let c = RunContext.from(data) else { return nil }
            guard let name else { c.setError("open_model: null model name"); return nil }
            return c.openModel(String(cString: name))?.handle
        }
        h.model_config = { model in PluginModel.from(model).map { UnsafePointer($0.configJSON) } }
        h.model_fingerprint_of = { model in PluginModel.from(model).map { UnsafePointer($0.fingerprintC) } }
        h.model_tensor_shape = { model, name, rows, cols in
            guard let m = PluginModel.from(model) else { return 1 }
            guard let name else { return m.run.setError("model_tensor_shape: null tensor name") }
            switch m.tensor(String(cString: name)) {
            case .failure(let message): return m.run.setError("model_tensor_shape: \(message)")
            case .success(let t):
                rows?.pointee = Int64(t.rows)
                cols?.pointee = Int64(t.cols)
                return 0
            }
        }
        h.model_read_tensor = { model, name, out, capacity in
            guard let m = PluginModel.from(model) else { return 1 }
            guard let name, let out else { return m.run.setError("model_read_tensor: null argument") }
            let tensorName = String(cString: name)
            switch m.tensor(tensorName) {
            case .failure(let message): return m.run.setError("model_read_tensor: \(message)")
            case .success(let t):
                guard capacity >= t.rows * t.cols else {
                    return m.run.setError("model_read_tensor: \(tensorName) has \(t.rows * t.cols) elements, capacity is \(capacity)")
                }
                let w = t.matrix
                for r in 0..<w.rows { w.widenRow(r, into: out + r * w.cols) }
                return 0
            }
        }
        h.model_tokenize = { model, text, addSpecial, out, capacity, count in
            guard let m = PluginModel.from(model) else { return 1 }
            guard let text else { return m.run.setError("model_tokenize: null text") }
            guard let tokenizer = m.tokenizer else { return m.run.setError("model_tokenize: model '\(m.name)' has no tokenizer (no tokenizer.json in its folder)") }
            let ids = tokenizer.encode(String(cString: text), addSpecialTokens: addSpecial != 0)
            count?.pointee = ids.count
            if let out { for (i, id) in ids.prefix(capacity).enumerated() { out[i] = Int32(id) } }
            return 0
        }
        h.model_chat_format = { model, messages, addGenerationPrompt in
            guard let m = PluginModel.from(model) else { return nil }
            guard let messages else { m.run.setError("model_chat_format: null messages"); return nil }
            switch m.chatFormat(String(cString: messages), addGenerationPrompt: addGenerationPrompt != 0) {
            case .success(let text): return m.run.retain(text)
            case .failure(let message): m.run.setError("model_chat_format: \(message)"); return nil
            }
        }
        h.model_forward = { model, tokens, count, request in
            guard let m = PluginModel.from(model) else { return 1 }
            guard let request else { return m.run.setError("model_forward: null request") }
            if let problem = m.forward(tokens: tokens, count: count, request: request) {
                return m.run.setError("model_forward: \(problem)")
            }
            return 0
        }
        h.parallel_for = { data, count, body, context in
            guard let c = RunContext.from(data) else { return 1 }
            guard let body else { return c.setError("parallel_for: null body") }
            nonisolated(unsafe) let ctx = context
            c.pool.parallelFor(count) { range in body(ctx, range.lowerBound, range.upperBound) }
            return 0
        }
        h.gemm = { data, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cOut, ldc in
            guard let c = RunContext.from(data) else { return 1 }
            if let problem = Gemm.check(transA: transA != 0, transB: transB != 0, m: m, n: n, k: k,
                                        a: a, lda: lda, b: b, ldb: ldb, c: cOut, ldc: ldc) {
                return c.setError("gemm: \(problem)")
            }
            Gemm.run(pool: c.pool, transA: transA != 0, transB: transB != 0, m: m, n: n, k: k, alpha: alpha,
                     a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: cOut, ldc: ldc)
            return 0
        }
    }
}

/// Row-major sgemm through OpenBLAS, with its arguments checked first (OpenBLAS's own checks
/// print and return; a bad leading dimension must never reach it) and C's rows split over
/// the host's pool (OpenBLAS itself runs single-threaded inside it).
enum Gemm {
    static func check(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      a: UnsafePointer<Float>?, lda: Int, b: UnsafePointer<Float>?, ldb: Int,
                      c: UnsafeMutablePointer<Float>?, ldc: Int) -> String? {
        let limit = Int(Int32.max)
        guard m <= limit, n <= limit, k <= limit, lda <= limit, ldb <= limit, ldc <= limit else {
            return "a size or leading dimension exceeds \(limit)"
        }
        // op(A) is [m, k]: A is [m, k] (lda ≥ k) or [k, m] (lda ≥ m); op(B) is [k, n] likewise.
        let aCols = transA ? m : k, bCols = transB ? k : n
        guard lda >= max(1, aCols) else { return "lda \(lda) < \(max(1, aCols)) (A is \(transA ? "[k, m]" : "[m, k]") row-major)" }
        guard ldb >= max(1, bCols) else { return "ldb \(ldb) < \(max(1, bCols)) (B is \(transB ? "[n, k]" : "[k, n]") row-major)" }
        guard ldc >= max(1, n) else { return "ldc \(ldc) < \(max(1, n))" }
        if m > 0 && n > 0 {
            guard c != nil else { return "null C" }
            if k > 0 { guard a != nil, b != nil else { return "null A or B" } }
        }
        return nil
    }

    static func run(pool: WorkerPool, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                    a: UnsafePointer<Float>?, lda: Int, b: UnsafePointer<Float>?, ldb: Int,
                    beta: Float, c: UnsafeMutablePointer<Float>?, ldc: Int) {
        guard m > 0, n > 0, let cOut = c else { return }
        nonisolated(unsafe) let (pa, pb, pc) = (a, b, cOut)
        let work = m * n * max(k, 1)
        let rowsPerPart = work >= 1 << 18 ? 1 : m     // small products: one call
        pool.parallelFor(m, granularity: rowsPerPart) { range in
            let rows = range.count
            // Rows r0… of op(A): rows of A, or columns of A when transposed.
            let aPart = pa.map { transA ? $0 + range.lowerBound : $0 + range.lowerBound * lda }
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(rows), Int32(n), Int32(k), alpha, aPart, Int32(lda), pb, Int32(ldb),
                        beta, pc + range.lowerBound * ldc, Int32(ldc))
        }
    }
}

/// A tensor a plugin may read: a 2-D weight as is, a 1-D vector as [n, 1].
struct PluginTensor {
    let rows: Int
    let cols: Int
    /// The stored values viewed as one row-major matrix of `rows` rows.
    let matrix: WeightMatrix
}

extension PluginModel {
    /// Any tensor of the checkpoint by name (the tied lm_head is the embedding).
    func tensor(_ name: String) -> Result<PluginTensor, PluginServiceError> {
        let storage = weights.storage
        if storage.tensors[name] == nil, name == "lm_head.weight" {
            let e = weights.lmHead
            return .success(PluginTensor(rows: e.rows, cols: e.cols, matrix: e))
        }
        guard storage.tensors[name] != nil, let info = try? storage.info(name), let data = try? storage.data(name) else {
            return .failure(PluginServiceError("model '\(self.name)' has no tensor '\(name.prefix(200))'"))
        }
        guard info.dtype == .f32 || info.dtype == .bf16 || info.dtype == .f16 else {
            return .failure(PluginServiceError("\(name) is \(info.dtype.rawValue), not a float tensor"))
        }
        let (rows, cols): (Int, Int)
        switch info.shape.count {
        case 1: (rows, cols) = (info.shape[0], 1)
        case 2: (rows, cols) = (info.shape[0], info.shape[1])
        default: return .failure(PluginServiceError("\(name) has shape \(info.shape): only 1-D and 2-D tensors are served"))
        }
        guard let base = data.baseAddress ?? UnsafeRawPointer(bitPattern: 1) else { return .failure(PluginServiceError("\(name): no data")) }
        // A vector is read as one row of n values: [n, 1] row-major is the same memory.
        let matrix = cols == 1 ? WeightMatrix(dtype: info.dtype, rows: 1, cols: rows, base: base)
                               : WeightMatrix(dtype: info.dtype, rows: rows, cols: cols, base: base)
        return .success(PluginTensor(rows: rows, cols: cols, matrix: matrix))
    }

    /// `apply_chat_template(messages, tokenize=False)`: messages_json must be a non-empty JSON
    /// array of objects, each with a string `role` and a `content` (string, list of parts or null).
    func chatFormat(_ json: String, addGenerationPrompt: Bool) -> Result<String, PluginServiceError> {
        guard let tokenizer else { return .failure(PluginServiceError("model '\(name)' has no tokenizer (no tokenizer.json in its folder)")) }
        let parsed: Value
        do { parsed = try Value(json: json) } catch { return .failure(PluginServiceError("messages are not JSON: \(error)")) }
        guard case .array(let messages) = parsed else { return .failure(PluginServiceError("messages must be a JSON array of {\"role\", \"content\"} objects")) }
        guard !messages.isEmpty else { return .failure(PluginServiceError("messages is empty")) }
        for (i, message) in messages.enumerated() {
            guard case .object(let object) = message else { return .failure(PluginServiceError("messages[\(i)] is not an object")) }
            guard case .string? = object["role"] else { return .failure(PluginServiceError("messages[\(i)].role must be a string")) }
            switch object["content"] {
            case .string?, .array?, Value.none?: break
            default: return .failure(PluginServiceError("messages[\(i)].content must be a string, a list of parts or null"))
            }
        }
        do {
            return .success(try tokenizer.applyChatTemplate(conversation: messages, addGenerationPrompt: addGenerationPrompt))
        } catch {
            return .failure(PluginServiceError("the chat template failed: \(error)"))
        }
    }
}

struct PluginServiceError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

extension PluginModel {
    /// model_forward: one sequence from position 0 through the engine's own forward (the same
    /// logits as `Model.forward`), copying the traces asked for at the chosen positions. Every
    /// argument and capacity is checked before anything is written; returns the problem or nil.
    func forward(tokens: UnsafePointer<Int32>?, count: Int, request rp: UnsafePointer<graft_forward_request>) -> String? {
        let size = Int(rp.pointee.struct_size)
        guard size >= MemoryLayout<graft_forward_request>.size else {
            return "request.struct_size is \(size), smaller than the \(MemoryLayout<graft_forward_request>.size) bytes of ABI 1.1's graft_forward_request"
        }
        let r = rp.pointee
        let c = weights.config
        guard count > 0, let tokens else { return "no tokens" }
        guard count <= c.maxPositionEmbeddings else { return "\(count) tokens exceed the model's \(c.maxPositionEmbeddings) positions" }
        var ids: [Int] = []
        ids.reserveCapacity(count)
        for i in 0..<count {
            let t = Int(tokens[i])
            guard t >= 0 && t < c.vocabSize else { return "tokens[\(i)] = \(t) is outside the vocabulary [0, \(c.vocabSize))" }
            ids.append(t)
        }
        var positions: [Int] = []
        if let p = r.positions, r.position_count > 0 {
            for i in 0..<r.position_count {
                let v = Int(p[i])
                guard v >= 0 && v < count else { return "positions[\(i)] = \(v) is outside [0, \(count))" }
                guard positions.last.map({ $0 < v }) ?? true else { return "positions must be strictly ascending (positions[\(i)] = \(v))" }
                positions.append(v)
            }
        } else {
            positions = Array(0..<count)
        }
        let P = positions.count, T = count, L = c.layers, d = c.hiddenSize, f = c.intermediateSize
        let H = c.heads, qDim = c.qDim, V = c.vocabSize
        let wanted: [(String, Bool, Int, Int)] = [
            ("logits", r.logits != nil, P * V, r.logits_capacity),
            ("residual_pre_attention", r.residual_pre_attention != nil, L * P * d, r.residual_pre_attention_capacity),
            ("residual_pre_ffn", r.residual_pre_ffn != nil, L * P * d, r.residual_pre_ffn_capacity),
            ("final_hidden", r.final_hidden != nil, P * d, r.final_hidden_capacity),
            ("ffn_coefficients", r.ffn_coefficients != nil, L * P * f, r.ffn_coefficients_capacity),
            ("attention_mix", r.attention_mix != nil, L * P * qDim, r.attention_mix_capacity),
            ("attention_weights", r.attention_weights != nil, L * H * P * T, r.attention_weights_capacity),
        ]
        for (name, asked, needed, capacity) in wanted where asked && capacity < needed {
            return "\(name)_capacity is \(capacity) floats, \(needed) needed (P = \(P), T = \(T), L = \(L), d = \(d), f = \(f), H = \(H), H·h = \(qDim), vocab = \(V)); nothing was written"
        }

        // Copies of the chosen rows of a [rows, width] buffer into out[layer][P][width].
        func gather(_ out: UnsafeMutablePointer<Float>?, width: Int) -> ((Int, UnsafePointer<Float>) -> Void)? {
            guard let out else { return nil }
            return { layer, x in
                for (i, p) in positions.enumerated() { (out + (layer * P + i) * width).update(from: x + p * width, count: width) }
            }
        }
        var trace = ForwardTrace()
        trace.residualPreAttention = gather(r.residual_pre_attention, width: d)
        trace.residualPreFFN = gather(r.residual_pre_ffn, width: d)
        trace.ffnCoefficients = gather(r.ffn_coefficients, width: f)
        trace.attentionMix = gather(r.attention_mix, width: qDim)
        if let out = r.final_hidden {
            trace.finalHidden = { x in
                for (i, p) in positions.enumerated() { (out + i * d).update(from: x + p * d, count: d) }
            }
        }
        if let out = r.attention_weights {
            out.update(repeating: 0, count: L * H * P * T)
            var slot = [Int](repeating: -1, count: T)
            for (i, p) in positions.enumerated() { slot[p] = i }
            // Called on the pool's threads; each (layer, row, head) owns its own row of out.
            trace.attentionWeights = { layer, row, head, alpha, n in
                let i = slot[row]
                guard i >= 0 else { return }
                (out + ((layer * H + head) * P + i) * T).update(from: alpha, count: n)
            }
        }
        let model = engine
        let cache = model.makeCache(maxTokens: T)
        let rows: [[Float]]
        do {
            // Logits rows only where needed: the last one alone when that is all that is asked.
            let logitsRequest: LogitsRequest = r.logits == nil ? .none : positions == [T - 1] ? .last : .all
            rows = try model.forward([ForwardInput(cache: cache, tokens: ids, logits: logitsRequest)], trace: trace)[0]
        } catch {
            return "\(error)"
        }
        if let out = r.logits {
            for (i, p) in positions.enumerated() {
                rows[rows.count == 1 ? 0 : p].withUnsafeBufferPointer { (out + i * V).update(from: $0.baseAddress!, count: V) }
            }
        }
        return nil
    }
}
