import Foundation
import GraftPluginABI
import LanguageModel
import Tokenizers

/// A model a plugin run uses through the 1.1 services (`graft_model *`): the run's target, or
/// a source opened by its configured name. The run owns it (strongly) until it returns; the
/// pointer the plugin holds is unretained.
final class PluginModel {
    let name: String
    let weights: ModelWeights
    /// The model's tokenizer (and chat template), when its folder has one.
    let tokenizer: Tokenizer?
    /// Back to the run (for last_error and run-lifetime strings).
    unowned let run: RunContext
    let configJSON: UnsafeMutablePointer<CChar>
    let fingerprintC: UnsafeMutablePointer<CChar>
    /// The gradient services' state for this model in this run (PluginTrainingServices.swift):
    /// its TrainingModel, built on first use, and the sensitivity buffers handed out.
    var trainingState: PluginTraining?

    init(name: String, weights: ModelWeights, tokenizer: Tokenizer?, run: RunContext) {
        self.name = name
        self.weights = weights
        self.tokenizer = tokenizer
        self.run = run
        let json = (try? JSONEncoder().encode(weights.config)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        configJSON = strdup(json)
        fingerprintC = strdup(weights.fingerprint)
    }

    deinit {
        free(configJSON)
        free(fingerprintC)
    }

    /// The engine that runs model_forward, on the run's pool (made on first use).
    var engine: Model {
        let pool = run.pool
        run.lock.lock()
        defer { run.lock.unlock() }
        if let e = engineStorage { return e }
        let e = Model(weights: weights, pool: pool)
        engineStorage = e
        return e
    }
    private var engineStorage: Model?

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ handle: OpaquePointer?) -> PluginModel? {
        handle.map { Unmanaged<PluginModel>.fromOpaque(UnsafeMutableRawPointer($0)).takeUnretainedValue() }
    }
}

/// Where a run finds the models it may open by name (`--source NAME=DIR`).
public struct PluginModelSource: Sendable {
    public let weights: ModelWeights
    public let tokenizer: Tokenizer?
    public init(weights: ModelWeights, tokenizer: Tokenizer?) {
        self.weights = weights
        self.tokenizer = tokenizer
    }
}

extension RunContext {
    /// The run's target as a 1.1 model handle (made once).
    var targetModel: PluginModel {
        lock.lock()
        defer { lock.unlock() }
        if let m = models["\u{0}target"] { return m }
        let m = PluginModel(name: "target", weights: weights, tokenizer: services.tokenizer, run: self)
        models["\u{0}target"] = m
        return m
    }

    /// A source model by its configured name, opened once per run; nil with last_error set.
    func openModel(_ name: String) -> PluginModel? {
        lock.lock()
        let known = models[name]
        lock.unlock()
        if let known { return known }
        guard let open = services.openModel else {
            setError("this host has no models to open by name (configure one with --source NAME=DIR)")
            return nil
        }
        do {
            let source = try open(name)
            lock.lock()
            defer { lock.unlock() }
            if let m = models[name] { return m }   // opened meanwhile on another thread
            let m = PluginModel(name: name, weights: source.weights, tokenizer: source.tokenizer, run: self)
            models[name] = m
            return m
        } catch {
            setError("cannot open model '\(name.prefix(100))': \(error)")
            return nil
        }
    }

    /// Sets the 1.1 last_error and returns a failure status.
    @discardableResult
    func setError(_ message: String) -> Int32 {
        lock.lock()   // services may fail on the pool's threads
        defer { lock.unlock() }
        free(lastServiceError)
        lastServiceError = strdup(message)
        return 1
    }

    /// A C string that lives until the run returns.
    func retain(_ text: String) -> UnsafePointer<CChar> {
        let p = strdup(text)!
        lock.lock()
        runStrings.append(p)
        lock.unlock()
        return UnsafePointer(p)
    }
}
