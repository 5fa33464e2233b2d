import Foundation
import GraftPluginABI
import LanguageModel
import TensorCore

/// One plugin run's host side: the model it reads, the delta it fills. The host table's
/// `data` and the builder pointer both point at it (unretained; the run holds it).
final class RunContext {
    let weights: ModelWeights
    let services: PluginServices
    let targets: [String: (rows: Int, cols: Int)]
    let fingerprint: String
    let configJSON: UnsafeMutablePointer<CChar>
    let fingerprintC: UnsafeMutablePointer<CChar>
    var entries: [String: [DeltaEntry]] = [:]
    var metadata: [String: String] = [:]
    /// The first refused builder call: the run fails even if the plugin ignored the status.
    var firstError: String?
    var lastError: UnsafeMutablePointer<CChar>?
    /// 1.1: the models this run opened (the target under "\0target"), the last service error,
    /// and strings handed out that live until the run returns.
    var models: [String: PluginModel] = [:]
    var lastServiceError: UnsafeMutablePointer<CChar>?
    var runStrings: [UnsafeMutablePointer<CChar>] = []
    /// Guards the lazily made pool and engines (services may be called from pool threads).
    let lock = NSLock()
    private var poolStorage: WorkerPool?
    /// The pool parallel_for, gemm and model_forward run on: the services' or one for this run.
    var pool: WorkerPool {
        lock.lock()
        defer { lock.unlock() }
        if let p = poolStorage { return p }
        let p = services.pool ?? WorkerPool()
        poolStorage = p
        return p
    }

    init(weights: ModelWeights, services: PluginServices) {
        self.weights = weights
        self.services = services
        targets = deltaTargets(of: weights)
        fingerprint = weights.fingerprint
        let json = (try? JSONEncoder().encode(weights.config)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        configJSON = strdup(json)
        fingerprintC = strdup(fingerprint)
    }

    deinit {
        free(configJSON)
        free(fingerprintC)
        free(lastError)
        free(lastServiceError)
        for p in runStrings { free(p) }
    }

    func fail(_ message: String) -> Int32 {
        if firstError == nil { firstError = message }
        free(lastError)
        lastError = strdup(message)
        return 1
    }

    func add(_ target: String, _ entry: DeltaEntry) -> Int32 {
        guard let (out, inDim) = targets[target] else { return fail("'\(target.prefix(200))' is not a matrix a delta can touch") }
        if let problem = entry.validate(rows: out, cols: inDim) { return fail("\(target): \(problem)") }
        entries[target, default: []].append(entry)
        return 0
    }

    static func from(_ data: UnsafeMutableRawPointer?) -> RunContext? {
        data.map { Unmanaged<RunContext>.fromOpaque($0).takeUnretainedValue() }
    }

    static func from(_ builder: OpaquePointer?) -> RunContext? {
        builder.map { Unmanaged<RunContext>.fromOpaque(UnsafeMutableRawPointer($0)).takeUnretainedValue() }
    }
}

/// The host's service table. C function pointers capture nothing: each finds its run through
/// `data` (or the builder pointer).
enum HostTable {
    static func make(context: UnsafeMutableRawPointer?) -> graft_host {
        var h = graft_host()
        h.abi_version = GRAFT_PLUGIN_ABI_VERSION
        h.struct_size = UInt32(MemoryLayout<graft_host>.size)
        h.data = context
        h.log = { data, level, message in
            guard let c = RunContext.from(data), let message else { return }
            c.services.log?(Int(level), String(cString: message))
        }
        h.progress = { data, fraction, message in
            guard let c = RunContext.from(data) else { return }
            c.services.progress?(fraction, message.map { String(cString: $0) } ?? "")
        }
        h.is_cancelled = { data in
            guard let c = RunContext.from(data) else { return 0 }
            return (c.services.isCancelled?() ?? false) ? 1 : 0
        }
        h.model_config_json = { data in UnsafePointer(RunContext.from(data)?.configJSON) }
        h.model_fingerprint = { data in UnsafePointer(RunContext.from(data)?.fingerprintC) }
        h.tensor_shape = { data, name, rows, cols in
            guard let c = RunContext.from(data), let name, let (r, k) = c.targets[String(cString: name)] else { return 1 }
            rows?.pointee = Int64(r)
            cols?.pointee = Int64(k)
            return 0
        }
        h.read_tensor = { data, name, out, capacity in
            guard let c = RunContext.from(data), let name, let out,
                  let (layer, module) = LayerModule.parse(String(cString: name)), layer < c.weights.layers.count else { return 1 }
            let w = c.weights.layers[layer].matrix(module)
            guard capacity >= w.rows * w.cols else { return 2 }
            for r in 0..<w.rows { w.widenRow(r, into: out + r * w.cols) }
            return 0
        }
        h.tokenize = { data, text, addSpecial, out, capacity, count in
            guard let c = RunContext.from(data), let text, let tokenize = c.services.tokenize else { return 1 }
            let ids = tokenize(String(cString: text), addSpecial != 0)
            count?.pointee = ids.count
            if let out { for (i, id) in ids.prefix(capacity).enumerated() { out[i] = Int32(id) } }
            return 0
        }
        h.delta_add_dense = { builder, target, values, count in
            guard let c = RunContext.from(builder) else { return 1 }
            guard let target, let values else { return c.fail("null argument") }
            return c.add(String(cString: target), .dense(values: Array(UnsafeBufferPointer(start: values, count: count))))
        }
        h.delta_add_rows = { builder, target, indices, k, values in
            guard let c = RunContext.from(builder) else { return 1 }
            guard let target, let indices, let values else { return c.fail("null argument") }
            let name = String(cString: target)
            guard let (_, inDim) = c.targets[name] else { return c.fail("'\(name.prefix(200))' is not a matrix a delta can touch") }
            return c.add(name, .rows(indices: (0..<k).map { Int(indices[$0]) }, values: Array(UnsafeBufferPointer(start: values, count: k * inDim))))
        }
        h.delta_add_columns = { builder, target, indices, k, values in
            guard let c = RunContext.from(builder) else { return 1 }
            guard let target, let indices, let values else { return c.fail("null argument") }
            let name = String(cString: target)
            guard let (out, _) = c.targets[name] else { return c.fail("'\(name.prefix(200))' is not a matrix a delta can touch") }
            return c.add(name, .columns(indices: (0..<k).map { Int(indices[$0]) }, values: Array(UnsafeBufferPointer(start: values, count: out * k))))
        }
        h.delta_add_low_rank = { builder, target, a, b, rank, scale in
            guard let c = RunContext.from(builder) else { return 1 }
            guard let target, let a, let b, rank > 0 else { return c.fail("null argument or rank ≤ 0") }
            let name = String(cString: target)
            guard let (out, inDim) = c.targets[name] else { return c.fail("'\(name.prefix(200))' is not a matrix a delta can touch") }
            let r = Int(rank)
            return c.add(name, .lowRank(a: Array(UnsafeBufferPointer(start: a, count: r * inDim)),
                                        b: Array(UnsafeBufferPointer(start: b, count: out * r)), rank: r, scale: scale))
        }
        h.delta_set_metadata = { builder, key, value in
            guard let c = RunContext.from(builder) else { return 1 }
            guard let key, let value else { return c.fail("null argument") }
            let k = String(cString: key)
            guard !["format", "format_version", "model_fingerprint", "strategy", "parameters"].contains(k) else {
                return c.fail("metadata key '\(k)' is the host's")
            }
            c.metadata[k] = String(cString: value)
            return 0
        }
        h.delta_last_error = { builder in UnsafePointer(RunContext.from(builder)?.lastError) }
        h.delta_add_file = { builder, path in
            guard let c = RunContext.from(builder) else { return 1 }
            guard let path else { return c.fail("null argument") }
            guard let read = c.services.readDelta else { return c.fail("this host reads no delta files") }
            do {
                let delta = try read(String(cString: path))
                guard delta.metadata.modelFingerprint == c.fingerprint else {
                    return c.fail("\(TransferError.fingerprintMismatch(expected: c.fingerprint, found: delta.metadata.modelFingerprint))")
                }
                for (target, entries) in delta.entries { for e in entries where c.add(target, e) != 0 { return 1 } }
                for (k, v) in delta.metadata.dictionary where !["format", "format_version", "model_fingerprint"].contains(k) {
                    c.metadata["source_" + k] = v
                }
                return 0
            } catch {
                return c.fail("\(error)")
            }
        }
        h.last_error = { data in UnsafePointer(RunContext.from(data)?.lastServiceError) }
        installModelServices(&h)      // PluginModelServices.swift (issue 6)
        installTrainingServices(&h)   // PluginTrainingServices.swift (issue 7)
        return h
    }
}
