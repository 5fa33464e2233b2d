import LanguageModel
import TensorCore

/// What `graft serve` is told: where to listen, what to load, and every limit.
public struct ServerOptions: Sendable {
    public var modelDirectory: String
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); `HTTPServer.port` tells which.
    public var port = 8080
    public var threads: Int?

    // Engine.
    /// Sequences decoded together in one step.
    public var maxBatch = 32
    /// KV-cache memory for all live sequences; a sequence reserves its worst case
    /// (prompt + max_tokens positions) when admitted.
    public var kvCacheMB = 1024
    /// Element type of the KV cache: f32 (the reference numerics) or bf16 (half the bytes per token).
    public var kvCacheType: KVCacheType = .f32
    /// Activations of the products with bf16 weights (Model.activations): f32 or bf16.
    public var activations: ActivationType = .f32
    /// Prompt tokens read per engine step (over all sequences being prefilled).
    public var prefillChunk = 256
    /// Sequences waiting for admission before new requests get 429.
    public var maxQueue = 256

    // Request limits.
    public var maxHeaderBytes = 16 * 1024
    public var maxBodyBytes = 4 * 1024 * 1024
    /// Prompt tokens of one sequence (also bounded by the model's context).
    public var maxPromptTokens = 8192
    /// Largest `max_tokens`; also the default when a request gives none.
    public var maxTokensLimit = 4096
    public var defaultMaxTokens = 256
    public var maxN = 16
    public var maxConnections = 4096

    // Timeouts, seconds.
    /// A keep-alive connection with no request in progress.
    public var idleTimeout = 60.0
    /// From a request's first byte to its last (slowloris).
    public var requestTimeout = 15.0
    /// A response write that makes no progress (a client that stopped reading).
    public var writeTimeout = 30.0
    /// Response bytes queued for one client before it counts as too slow and is dropped.
    public var maxPendingWriteBytes = 8 * 1024 * 1024
    /// SO_SNDBUF of client sockets, bytes (0: the kernel's default, which autotunes to MiBs).
    /// Tests shrink it so that a client that stops reading fills it quickly.
    public var socketSendBufferBytes = 0
    /// After SIGINT/SIGTERM: how long in-flight work may run before it is cancelled.
    public var shutdownGrace = 10.0
    /// Log one line per request.
    public var logRequests = true
    /// Seconds the engine sleeps after each step: tests use it to keep a tiny model's
    /// sequences alive long enough to queue, cancel or shut down under them. 0 in service.
    public var stepDelay = 0.0

    // Variants (DESIGN.md, Deltas and variants).
    /// The admin API's bearer token; nil disables the admin routes (403).
    public var adminToken: String?
    /// The folder delta paths in API requests are relative to; nothing outside it is read.
    public var deltaDirectory = "deltas"
    /// Variants built before serving: (name, delta file path as the operator gave it).
    public var preloadVariants: [(name: String, path: String)] = []
    /// The element type the preloaded variants hold their delta values in (as the API's `delta_dtype`).
    public var preloadDeltaType: DeltaValueType = .auto
    /// Where strategy plugins are loaded from, by name; nil: beside the executable.
    public var pluginDirectory: String?
    /// Models plugins may open by name (`--source NAME=DIR`), opened on first use.
    public var sources: [(name: String, directory: String)] = []
    /// The `graft` binary transfer jobs run (`graft delta build`); nil: this executable.
    public var graftExecutable: String?

    public init(modelDirectory: String) {
        self.modelDirectory = modelDirectory
    }
}
