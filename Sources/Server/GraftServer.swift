import Foundation
import LanguageModel
import Logging
import TensorCore
import Tokenizers
import Transfer

/// `graft serve`: a model behind the OpenAI-compatible HTTP API. The loop thread (the one that
/// calls `run`) does all I/O; the engine thread does all model work.
public final class GraftServer: @unchecked Sendable {
    public let options: ServerOptions
    let model: Model
    let tokenizer: Tokenizer?
    let engine: Engine
    let http: HTTPServer
    let metrics = ServerMetrics()
    let logger: Logger
    /// The ids a request may name: `base` and the model folder's name.
    let modelID = "base"
    let modelAlias: String
    /// Served variants (loop thread only), the admin token, and the builder of new variants.
    let registry = VariantRegistry()
    let adminAuth: AdminAuth
    let variantBuilder: VariantBuilder
    let pluginHost: PluginHost
    /// The models plugins may open by name (`--source`).
    let modelSources: ModelSources
    let transfers = TransferJobs()
    /// Private temporary files of plugin variant builds (`makeBuildDirectory`).
    let buildDirectory: String
    private var nextJobID = 1
    private var shuttingDown = false

    /// Loads the model (and its tokenizer, when the folder has one) and binds the socket.
    public init(options: ServerOptions, logger: Logger = Logger(label: "graft.serve")) throws {
        self.options = options
        self.logger = logger
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: options.modelDirectory, isDirectory: &isDir), isDir.boolValue else {
            throw ServerError.startup("model folder '\(options.modelDirectory)' does not exist (hint: tools/provision writes models/smollm2-135m-instruct)")
        }
        modelAlias = URL(fileURLWithPath: options.modelDirectory).standardizedFileURL.lastPathComponent
        do {
            model = try Model.load(directory: options.modelDirectory, pool: WorkerPool(threads: options.threads), kvCacheType: options.kvCacheType,
                                   activations: options.activations)
        } catch {
            throw ServerError.startup("cannot load the model '\(options.modelDirectory)': \(error)")
        }
        if let warning = model.activationWarning { logger.warning("\(warning)") }
        if FileManager.default.fileExists(atPath: options.modelDirectory + "/tokenizer.json") {
            do {
                tokenizer = try Tokenizer(directory: options.modelDirectory)
            } catch {
                throw ServerError.startup("cannot load the tokenizer of '\(options.modelDirectory)': \(error)")
            }
        } else {
            tokenizer = nil
            logger.warning("no tokenizer.json in \(options.modelDirectory): only token-id prompts are served")
        }
        adminAuth = AdminAuth(token: options.adminToken)
        variantBuilder = VariantBuilder(weights: model.weights, deltaDirectory: options.deltaDirectory)
        pluginHost = PluginHost(directory: options.pluginDirectory ?? PluginHost.executableDirectory)
        do { modelSources = try ModelSources(options.sources) } catch { throw ServerError.startup("--source: \(error)") }
        for (name, path) in options.preloadVariants {
            guard VariantRegistry.isValidName(name), name != modelID, name != modelAlias, registry[name] == nil else {
                throw ServerError.startup("--variant \(name)=\(path): the name must be 1–64 letters, digits, '.', '_' or '-', unique, and not base")
            }
            var spec = VariantSpec(deltas: [path], operatorPaths: true)
            spec.valueType = options.preloadDeltaType
            do {
                let (variant, provenance) = try Self.buildVariant(variantBuilder, name: name, spec: spec)
                registry.publish(.init(variant: variant, provenance: provenance, spec: spec, created: Int(Date().timeIntervalSince1970)))
                logger.notice("variant '\(name)' loaded from \(path) (\(variant.residentBytes) bytes)")
            } catch {
                throw ServerError.startup("--variant \(name)=\(path): \(error)")
            }
        }
        metrics.variants.set(Double(registry.entries.count))
        let http = try HTTPServer(options: options, logger: logger)
        self.http = http
        engine = Engine(model: model, tokenizer: tokenizer, options: options, metrics: metrics, logger: logger,
                        post: { work in http.post(work) })
        buildDirectory = try Self.makeBuildDirectory()
        engine.onQuarantine = { [unowned self] variant in
            http.post { [self] in
                registry.quarantine(variant)
                metrics.variantsQuarantined.set(Double(registry.quarantinedCount))
            }
        }
        http.onRequest = { [unowned self] in route($0) }
        http.onRequestEnded = { [unowned self] in ended($0) }
        http.onShutdown = { [unowned self] in
            shuttingDown = true
            engine.stopAccepting()
        }
        http.onAbort = { [unowned self] in engine.abortEverything() }
        http.engineIdle = { [unowned self] in engine.isIdle }
        do {
            try http.listen()
        } catch {
            try? FileManager.default.removeItem(atPath: buildDirectory)
            throw error
        }
    }

    /// The port bound (the one asked for, or the one the system chose for port 0).
    public var port: Int { http.port }

    /// Serves until SIGINT/SIGTERM (or `stop`), then finishes in-flight work within the grace
    /// period and returns.
    public func run() {
        signal(SIGPIPE, SIG_IGN)
        engine.start()
        logger.notice("serving \(options.modelDirectory) as '\(modelID)' on http://\(options.host):\(port) (max batch \(options.maxBatch), KV cache \(options.kvCacheMB) MiB \(options.kvCacheType.rawValue), activations \(options.activations.rawValue))")
        http.run()
        // Plugin children still running have no one to publish to.
        for process in transfers.children.values where process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(atPath: buildDirectory)
        engine.shutdown()
        http.freeHandles()
        logger.notice("stopped")
    }

    /// Begins a graceful shutdown, as SIGTERM does. Safe from any thread.
    public func stop() { http.requestShutdown() }

    // MARK: Requests

    private func ended(_ exchange: Exchange) {
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - exchange.started) / 1e9
        metrics.request(route: exchange.route, status: exchange.status, seconds: seconds)
        metrics.connections.set(Double(http.connectionCount))
        guard options.logRequests else { return }
        let r = exchange.request
        var line = "\(r.method) \(r.path.prefix(200)) \(exchange.status) \(String(format: "%.3f", seconds))s"
        if !exchange.logDetails.isEmpty { line += " " + exchange.logDetails }
        logger.info("\(line)")
    }

    private func route(_ exchange: Exchange) {
        let r = exchange.request
        let routes: [(String, String, (Exchange) -> Void)] = [
            ("GET", "/health", health),
            ("GET", "/metrics", metricsText),
            ("GET", "/v1/models", models),
            ("POST", "/v1/completions", { [unowned self] in completions($0, .completion) }),
            ("POST", "/v1/chat/completions", { [unowned self] in completions($0, .chat) }),
            ("POST", "/tokenize", tokenize),
            ("POST", "/detokenize", detokenize),
        ]
        let path = r.path.count > 1 && r.path.hasSuffix("/") ? String(r.path.dropLast()) : r.path
        if let (_, p, handler) = routes.first(where: { $0.0 == r.method && $0.1 == path }) {
            exchange.route = p
            if shuttingDown && p != "/metrics" {
                exchange.respond(error: .unavailable("The server is shutting down."))
                return
            }
            handler(exchange)
        } else if path.hasPrefix("/v1/models/"), r.method == "GET" {
            exchange.route = "/v1/models/{id}"
            let name = String(path.dropFirst("/v1/models/".count))
            if servesModel(named: name) { return exchange.respond(json: modelCard) }
            guard registry[name] != nil else { return exchange.respond(error: .modelNotFound(name)) }
            exchange.respond(json: variantCard(name))
        } else if routeAdmin(exchange, path: path) {
            return
        } else if routes.contains(where: { $0.1 == path }) {
            exchange.respond(error: .methodNotAllowed(r.method, path))
        } else {
            exchange.respond(error: .notFound("Unknown route \(r.method) \(r.path.prefix(200)) (hint: the API is under /v1)."))
        }
    }

    /// `base`, the model folder's name, or a path ending in it (lm-evaluation-harness sends the
    /// path it also loads the tokenizer from).
    private func servesModel(named name: String) -> Bool {
        name == modelID || name == modelAlias
            || (name.hasSuffix("/" + modelAlias) || name.hasSuffix("/" + modelAlias + "/"))
    }

    private func health(_ exchange: Exchange) {
        let (queued, running) = engine.load
        exchange.respond(json: .object([("status", .string("ok")), ("model", .string(modelID)),
                                        ("running", .int(running)), ("queued", .int(queued))]))
    }

    private func metricsText(_ exchange: Exchange) {
        metrics.connections.set(Double(http.connectionCount))
        exchange.respond(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.text())
    }

    private var modelCard: JSON {
        .object([("id", .string(modelID)), ("object", .string("model")), ("created", .int(0)), ("owned_by", .string("graft")),
                 ("root", .string(modelAlias)), ("max_model_len", .int(model.config.maxPositionEmbeddings)),
                 ("numerics", numerics)])
    }

    private func variantCard(_ name: String) -> JSON {
        .object([("id", .string(name)), ("object", .string("model")), ("created", .int(registry[name]?.created ?? 0)),
                 ("owned_by", .string("graft")), ("root", .string(modelAlias)), ("parent", .string(modelID)),
                 ("max_model_len", .int(model.config.maxPositionEmbeddings)), ("numerics", numerics)])
    }

    /// The serving options that change the numbers a model gives (not its weights): `graft eval`
    /// keys its result cache by them beside the weights' fingerprint.
    private var numerics: JSON {
        .object([("activations", .string(model.activations.rawValue)), ("kv_cache_dtype", .string(model.kvCacheType.rawValue))])
    }

    private func models(_ exchange: Exchange) {
        let cards = [modelCard] + registry.names.map(variantCard)
        exchange.respond(json: .object([("object", .string("list")), ("data", .array(cards))]))
    }

    /// Parses a JSON body, refusing invalid UTF-8 and malformed JSON with 400. Any Content-Type
    /// is read as JSON (curl -d sends form-urlencoded), as llama.cpp's server does.
    func jsonBody(_ exchange: Exchange) -> JSONValue? {
        let body = exchange.request.body
        guard String(validating: body, as: UTF8.self) != nil else {
            exchange.respond(error: .invalid("The request body is not valid UTF-8."))
            return nil
        }
        do {
            return try JSONValue.parse(Data(body))
        } catch {
            exchange.respond(error: .invalid("The request body is not valid JSON: \(error.description)."))
            return nil
        }
    }

    private func completions(_ exchange: Exchange, _ kind: CompletionKind) {
        guard let body = jsonBody(exchange) else { return }
        let request: CompletionRequest
        do {
            request = try CompletionRequest(kind: kind, body: body, options: options)
        } catch {
            return exchange.respond(error: error)
        }
        // The variant is resolved once, here, and pinned by the jobs until they end.
        var variant: Variant?
        var served = modelID
        if let name = request.model ?? registry.defaultName, !servesModel(named: name) {
            guard let entry = registry[name] else { return exchange.respond(error: .modelNotFound(name)) }
            // A quarantined variant's traffic goes to base, and the response says so.
            if !entry.quarantined {
                variant = entry.variant
                served = name
            }
        }
        let firstJob = nextJobID
        nextJobID += request.prompts.count
        let jobIDs = firstJob..<nextJobID
        let responder = CompletionResponder(exchange: exchange, request: request, modelName: served,
                                            jobCount: request.prompts.count,
                                            cancelJobs: { [engine] in for id in jobIDs { engine.cancel(job: id) } })
        responder.setFirstJob(firstJob)
        exchange.onCancel = { [engine] in for id in jobIDs { engine.cancel(job: id) } }
        let now = DispatchTime.now().uptimeNanoseconds
        for (i, prompt) in request.prompts.enumerated() {
            let job = GenerationJob(id: firstJob + i, prompt: prompt, parameters: request.parameters, n: request.n,
                                    choiceBase: i * request.n, logprobs: request.logprobs, echo: request.echo,
                                    ignoreEOS: request.ignoreEOS, sink: responder, submitted: now, variant: variant)
            if let refusal = engine.submit(job) {
                for id in firstJob..<(firstJob + i) { engine.cancel(job: id) }
                return exchange.respond(error: refusal)
            }
        }
    }

    /// llama.cpp's `/tokenize`: {"content": text, "add_special": bool} → {"tokens": [...]}.
    private func tokenize(_ exchange: Exchange) {
        guard let body = jsonBody(exchange) else { return }
        guard let tokenizer else { return exchange.respond(error: .invalid("This model has no tokenizer.")) }
        guard let text = body["content"]?.string ?? body["prompt"]?.string else {
            return exchange.respond(error: .invalid("content must be a string.", param: "content"))
        }
        guard text.utf8.count <= options.maxPromptTokens * 32 else {
            return exchange.respond(error: .invalid("content is longer than any prompt this server accepts.", param: "content"))
        }
        let addSpecial = body["add_special"]?.bool ?? false
        let withPieces = body["with_pieces"]?.bool ?? false
        engine.perform { [http] in
            let ids = tokenizer.encode(text, addSpecialTokens: addSpecial)
            let tokens: JSON = withPieces
                ? .array(ids.map { .object([("id", .int($0)), ("piece", .string(tokenizer.decode([$0])))]) })
                : .ints(ids)
            let response = JSON.object([("tokens", tokens)]).bytes + [0x0A]
            http.post { exchange.respond(status: 200, body: response) }
        }
    }

    /// llama.cpp's `/detokenize`: {"tokens": [...]} → {"content": text}.
    private func detokenize(_ exchange: Exchange) {
        guard let body = jsonBody(exchange) else { return }
        guard let tokenizer else { return exchange.respond(error: .invalid("This model has no tokenizer.")) }
        guard let items = body["tokens"]?.array else {
            return exchange.respond(error: .invalid("tokens must be an array of token ids.", param: "tokens"))
        }
        var ids: [Int] = []
        for item in items {
            guard let id = item.int, id >= 0, id < max(tokenizer.vocabSize, model.config.vocabSize) else {
                return exchange.respond(error: .invalid("tokens must be valid token ids.", param: "tokens"))
            }
            ids.append(id)
        }
        guard ids.count <= options.maxPromptTokens + options.maxTokensLimit else {
            return exchange.respond(error: .invalid("too many tokens.", param: "tokens"))
        }
        engine.perform { [http, ids] in
            let text = tokenizer.decode(ids)
            let response = JSON.object([("content", .string(text))]).bytes + [0x0A]
            http.post { exchange.respond(status: 200, body: response) }
        }
    }
}
