import ArgumentParser
import Foundation
import LanguageModel
import Logging
import Server
import TensorCore
import Transfer

/// `graft serve`: the OpenAI-compatible HTTP server (../shared/DESIGN.md, HTTP API).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over an OpenAI-compatible HTTP API (completions, chat, streaming, metrics).")

    @Option(help: "Model folder (config.json, tokenizer.json, model.safetensors).")
    var model = "models/smollm2-135m-instruct"
    @Option(help: "Address to bind (127.0.0.1: this machine only).") var host = "127.0.0.1"
    @Option(help: "Port (0: any free port).") var port = 8080
    @Option(help: "Worker threads for the model (default: all cores).") var threads: Int?
    @Option(help: "Sequences decoded together in one engine step.") var maxBatch = 32
    @Option(help: "KV-cache memory for all running sequences, MiB.") var kvCacheMb = 1024
    @Option(help: kvCacheDtypeHelp)
    var kvCacheDtype: KVCacheType = .f32
    @Option(help: activationsHelp)
    var activations: ActivationType = .f32
    @Option(help: "Prompt tokens read per engine step.") var prefillChunk = 256
    @Option(help: "Sequences waiting for admission before requests get 429.") var maxQueue = 256
    @Option(help: "Largest prompt, in tokens.") var maxPromptTokens = 8192
    @Option(help: "Largest max_tokens a request may ask for.") var maxTokensLimit = 4096
    @Option(help: "Default max_tokens for chat completions.") var defaultMaxTokens = 256
    @Option(help: "Largest request header block, bytes.") var maxHeaderBytes = 16 * 1024
    @Option(help: "Largest request body, bytes.") var maxBodyBytes = 4 * 1024 * 1024
    @Option(help: "Most open connections.") var maxConnections = 4096
    @Option(help: "Seconds a keep-alive connection may sit idle.") var idleTimeout = 60.0
    @Option(help: "Seconds a request may take to arrive (slow clients).") var requestTimeout = 15.0
    @Option(help: "Seconds a response write may stall (clients that stop reading).") var writeTimeout = 30.0
    @Option(help: "Seconds in-flight requests get after SIGINT/SIGTERM.") var shutdownGrace = 10.0
    @Flag(help: "Do not log one line per request.") var quiet = false
    @Option(help: "File holding the admin API's bearer token (else GRAFT_ADMIN_TOKEN; neither: admin routes off).")
    var adminTokenFile: String?
    @Option(help: "Folder that delta paths in admin requests are relative to.") var deltaDir = "deltas"
    @Option(help: ArgumentHelp("Preload a variant from a delta file (repeatable).", valueName: "NAME=PATH"))
    var variant: [String] = []
    @Option(help: ArgumentHelp("Element type the --variant deltas are held in: auto (bf16 over a 16-bit base, else f32), f32 or bf16.",
                               valueName: "auto|f32|bf16"))
    var variantDeltaDtype = DeltaValueType.auto
    @Option(help: "Folder strategy plugins are loaded from, by name (default: beside this executable).") var pluginDir: String?
    @Option(name: .customLong("source"), help: ArgumentHelp("A model plugins may open by name (repeatable; opened on first use).", valueName: "NAME=DIR"))
    var sources: [String] = []
    @Option(help: ArgumentHelp("Measure the engine's batched decode alone at these batch sizes (tokens/s as JSON), then exit.",
                               visibility: .hidden))
    var engineBenchmark: String?

    func run() throws {
        if let sizes = engineBenchmark {
            var figures: [String] = []
            for size in sizes.split(separator: ",").compactMap({ Int($0) }) {
                let tps = try measureBatchedDecode(modelDirectory: model, threads: threads, batch: size, activations: activations)
                figures.append("\"\(size)\": \(String(format: "%.1f", tps))")
            }
            print("{" + figures.joined(separator: ", ") + "}")
            return
        }
        var o = ServerOptions(modelDirectory: model)
        o.host = host
        o.port = port
        o.threads = threads
        o.maxBatch = maxBatch
        o.kvCacheMB = kvCacheMb
        o.kvCacheType = kvCacheDtype
        o.activations = activations
        o.prefillChunk = prefillChunk
        o.maxQueue = maxQueue
        o.maxPromptTokens = maxPromptTokens
        o.maxTokensLimit = maxTokensLimit
        o.defaultMaxTokens = defaultMaxTokens
        o.maxHeaderBytes = maxHeaderBytes
        o.maxBodyBytes = maxBodyBytes
        o.maxConnections = maxConnections
        o.idleTimeout = idleTimeout
        o.requestTimeout = requestTimeout
        o.writeTimeout = writeTimeout
        o.shutdownGrace = shutdownGrace
        o.logRequests = !quiet
        o.deltaDirectory = deltaDir
        o.pluginDirectory = pluginDir
        do { o.sources = try ModelSources(arguments: sources).entries } catch { throw ValidationError("--source: \(error)") }
        if let file = adminTokenFile {
            guard let token = try? String(contentsOfFile: file, encoding: .utf8),
                  !token.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw ValidationError("--admin-token-file \(file): unreadable or empty")
            }
            o.adminToken = token
        } else if let token = ProcessInfo.processInfo.environment["GRAFT_ADMIN_TOKEN"], !token.isEmpty {
            o.adminToken = token
        }
        for item in variant {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex, item.index(after: eq) != item.endIndex else {
                throw ValidationError("--variant wants NAME=PATH, got '\(item)'")
            }
            o.preloadVariants.append((String(item[..<eq]), String(item[item.index(after: eq)...])))
        }
        o.preloadDeltaType = variantDeltaDtype
        guard maxBatch >= 1, kvCacheMb >= 1, prefillChunk >= 1, maxQueue >= 0 else {
            throw ValidationError("--max-batch, --kv-cache-mb and --prefill-chunk must be ≥ 1")
        }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let server: GraftServer
        do {
            server = try GraftServer(options: o)
        } catch {
            throw CLIError("\(error)")
        }
        server.run()
    }
}
