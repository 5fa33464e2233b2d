import Prometheus

/// The server's Prometheus metrics (`GET /metrics`). swift-prometheus formats the text
/// exposition and keeps the collectors thread-safe: the loop counts requests, the engine counts
/// tokens, steps and memory.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let promptTokens: Counter
    let generationTokens: Counter
    let timeToFirstToken: ValueHistogram
    let timePerToken: ValueHistogram
    let batchSize: ValueHistogram
    let stepSeconds: ValueHistogram
    let queueDepth: Gauge
    let running: Gauge
    let kvCacheBytes: Gauge
    let kvCacheReservedBytes: Gauge
    let kvCacheBudgetBytes: Gauge
    let connections: Gauge
    let variants: Gauge
    let variantsQuarantined: Gauge

    private static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                                   0.3, 0.5, 0.75, 1, 2.5, 5, 10, 30]

    init() {
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "graft", metricName: metric, unitName: unit, helpText: help)
        }
        promptTokens = registry.makeCounter(descriptor: name("prompt_tokens", "total", "Prompt tokens read."))
        generationTokens = registry.makeCounter(descriptor: name("generation_tokens", "total", "Tokens generated."))
        timeToFirstToken = registry.makeValueHistogram(
            descriptor: name("time_to_first_token", "seconds", "From a request's arrival to its first generated token."),
            buckets: Self.latencyBuckets + [60])
        timePerToken = registry.makeValueHistogram(
            descriptor: name("time_per_output_token", "seconds", "Between consecutive tokens of one sequence."),
            buckets: Self.latencyBuckets)
        batchSize = registry.makeValueHistogram(
            descriptor: name("batch_size", "sequences", "Sequences in one engine step."),
            buckets: [1, 2, 4, 8, 16, 24, 32, 48, 64, 128])
        stepSeconds = registry.makeValueHistogram(
            descriptor: name("engine_step", "seconds", "Duration of one engine step (one forward)."),
            buckets: Self.latencyBuckets)
        queueDepth = registry.makeGauge(descriptor: name("queue_depth", "sequences", "Sequences waiting for admission."))
        running = registry.makeGauge(descriptor: name("running", "sequences", "Sequences being prefilled or decoded."))
        kvCacheBytes = registry.makeGauge(descriptor: name("kv_cache_used", "bytes", "KV-cache memory allocated now."))
        kvCacheReservedBytes = registry.makeGauge(
            descriptor: name("kv_cache_reserved", "bytes", "KV-cache memory reserved by admitted sequences (their worst case)."))
        kvCacheBudgetBytes = registry.makeGauge(descriptor: name("kv_cache_budget", "bytes", "--kv-cache-mb in bytes."))
        connections = registry.makeGauge(descriptor: name("open_connections", "count", "Open client connections."))
        variants = registry.makeGauge(descriptor: name("variants", "count", "Variants published besides base."))
        variantsQuarantined = registry.makeGauge(descriptor: name("variants_quarantined", "count", "Variants that produced non-finite logits (served by base)."))
    }

    /// Counts one finished request by route and status.
    func request(route: String, status: Int, seconds: Double) {
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "graft", metricName: "http_requests", unitName: "total",
                                                              helpText: "HTTP requests by route and status."),
                             labels: [("route", route), ("status", String(status))]).increment()
        registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(namespace: "graft", metricName: "http_request_duration", unitName: "seconds",
                                             helpText: "From a request's arrival to its last response byte queued."),
            labels: [("route", route)], buckets: Self.latencyBuckets + [60, 300]).record(seconds)
    }

    func text() -> [UInt8] { registry.emitToBuffer() }
}
