import Foundation
import TensorCore

/// One arm of a comparison: a variant name as the server knows it and its fingerprint, the
/// cache key of its results.
public struct Arm: Sendable, Codable {
    public var name: String
    public var fingerprint: String
    /// What the server says about it, JSON text: `model` (its `/v1/models` entry, without
    /// `created`) and, with admin access, `variant` (`GET /v1/variants/{name}`: its deltas'
    /// metadata and content hashes) or, for base, `model_fingerprint`.
    public var provenance: String
    /// `content` (the variant's content fingerprint), `model` (base: the model's fingerprint)
    /// or `name` (no admin access: a hash of the `/v1/models` entry, which names the variant
    /// but says nothing of its weights).
    public var fingerprintSource: String
    /// Whether its results are read from and written to the cache (`name` fingerprints only
    /// with `cacheByName`: a variant replaced under the same name would reuse stale answers).
    public var cacheable: Bool
    /// Why the fingerprint is weaker than the weights, for the report.
    public var note: String?
}

/// Evaluates one or two variants on the same items, interleaved (item i of A, then item i of B),
/// with the same prompts and seeds, streaming every result to `items.jsonl` and the cache.
public final class ABRun: @unchecked Sendable {
    public let client: OpenAIClient
    public let arms: [Arm]
    public let cache: ResultCache
    public let seeds: [Int]
    public let workers: Int
    public let log: @Sendable (String) -> Void

    public init(client: OpenAIClient, arms: [Arm], cache: ResultCache, seeds: [Int], workers: Int,
                log: @escaping @Sendable (String) -> Void) {
        self.client = client; self.arms = arms; self.cache = cache; self.seeds = seeds
        self.workers = workers; self.log = log
    }

    /// Looks the variants up on the server: they must be listed by `GET /v1/models`. With an
    /// admin token, a variant's fingerprint is its content fingerprint (`GET /v1/variants/{name}`)
    /// and base's the model's (`GET /v1/variants`), so a variant replaced under the same name
    /// never shares cached answers with its predecessor. Without admin access (or from a server
    /// without these routes) the fingerprint hashes the `/v1/models` entry, and the arm is not
    /// cached unless `cacheByName`. A token the server refuses is an error.
    public static func resolveArms(_ names: [String], client: OpenAIClient, cacheByName: Bool = false) throws(EvaluationError) -> [Arm] {
        let models = try client.models()
        var arms: [Arm] = []
        for name in names {
            guard var entry = models.first(where: { ($0["id"] as? String) == name }) else {
                let ids = models.compactMap { $0["id"] as? String }
                throw .usage("variant '\(name)' is not served (GET /v1/models lists: \(ids.joined(separator: ", ")))")
            }
            entry["created"] = nil
            // Base has no parent (Graft's and vLLM's model cards).
            let isBase = (entry["parent"] as? String) == nil
            var record: [String: Any] = ["model": entry]
            var fingerprint: String?
            var why = "no admin token (--admin-token-file or GRAFT_ADMIN_TOKEN)"
            if client.hasAdminToken {
                do throws(EvaluationError) {
                    if isBase {
                        fingerprint = try client.request("GET", "v1/variants", admin: true)["fingerprint"] as? String
                        record["model_fingerprint"] = fingerprint
                    } else {
                        let variant = try client.request("GET", "v1/variants/\(name)", admin: true)
                        record["variant"] = variant
                        fingerprint = variant["content_fingerprint"] as? String
                    }
                    if fingerprint == nil { why = "the server's variant description has no \(isBase ? "fingerprint" : "content_fingerprint")" }
                } catch {
                    if case .server(let m) = error, m.contains("HTTP 401") || m.contains("HTTP 403") {
                        throw .usage("the server refused the admin token: \(m)")
                    }
                    why = "the admin API did not answer: \(error)"
                }
            }
            let text = String(decoding: (try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
            if let fingerprint = fingerprint.map({ $0 + numericsSuffix(entry) }) {
                arms.append(Arm(name: name, fingerprint: fingerprint, provenance: text, fingerprintSource: isBase ? "model" : "content",
                                cacheable: true))
            } else {
                let byName = "sha256:" + String(SHA256Digest.hex(text).prefix(32))
                let note = "'\(name)' is fingerprinted by its /v1/models entry (its name, not its weights): \(why); "
                    + (cacheByName ? "cached by name (--cache-by-name): a variant replaced under this name reuses stale answers"
                                   : "its results are not cached (--cache-by-name caches them by name)")
                arms.append(Arm(name: name, fingerprint: byName, provenance: text, fingerprintSource: "name",
                                cacheable: cacheByName, note: note))
            }
        }
        return arms
    }

    /// The serving numerics of a `/v1/models` entry (Graft's `numerics`: bf16 activations, a bf16
    /// KV cache) when any differs from f32, as a suffix of the arm's fingerprint: the same
    /// weights served with other numerics answer differently, so they must not share cached
    /// answers. Empty for the default f32 numerics (and servers that do not say), so caches made
    /// before the field existed stay valid.
    static func numericsSuffix(_ entry: [String: Any]) -> String {
        guard let numerics = entry["numerics"] as? [String: Any] else { return "" }
        let values = numerics.keys.sorted().map { ($0, "\(numerics[$0]!)") }
        guard values.contains(where: { $0.1 != "f32" }) else { return "" }
        return "+numerics:" + values.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
    }

    /// Runs `task` for every arm; returns the results per arm in (item, seed) order.
    public func run(_ task: EvalTask, items: JSONLWriter) throws(EvaluationError) -> [[ItemResult]] {
        let ids = task.itemIDs
        let units = seeds.flatMap { s in ids.indices.map { (index: $0, seed: s) } }
        // Only what was cached before this run counts as cached: in an A/A run both arms really
        // ask the server, which is what checks that serving is deterministic.
        let cached = arms.map { $0.cacheable ? cache.results(fingerprint: $0.fingerprint, task: task.task.rawValue, protocolID: task.protocolID) : [:] }
        let todo = units.filter { u in cached.contains { $0[ResultCache.key(ids[u.index], u.seed)] == nil } }.count
        log("\(task.task.rawValue): \(units.count) items × \(arms.count) arm(s), \(units.count - todo) already cached; protocol \(task.protocolID)")
        let progress = Progress(total: units.count, fresh: todo, label: task.task.rawValue)
        let failure = FailureBox()
        let results = parallelMap(units.count, workers: workers) { [self] u, slot -> [ItemResult]? in
            if failure.get() != nil { return nil }
            let unit = units[u]
            var row: [ItemResult] = []
            var fresh = false
            for (a, arm) in arms.enumerated() {
                if var hit = cached[a][ResultCache.key(ids[unit.index], unit.seed)] {
                    hit.variant = arm.name
                    hit.cached = true
                    row.append(hit)
                    continue
                }
                do throws(EvaluationError) {
                    var r = try task.evaluate(index: unit.index, model: arm.name, client: client, slot: slot, seed: unit.seed)
                    r.fingerprint = arm.fingerprint
                    if arm.cacheable { cache.store(r) }
                    row.append(r)
                    fresh = true
                } catch {
                    failure.set(error)
                    return nil
                }
            }
            for r in row { items.write(r) }
            progress.step(fresh: fresh, correct: row.map(\.correct))
            return row
        }
        progress.finish()
        if let e = failure.get() {
            throw e.appendingHint("results so far are saved; run the same command again to resume")
        }
        return arms.indices.map { a in results.map { $0![a] } }
    }
}

extension EvaluationError {
    func appendingHint(_ hint: String) -> EvaluationError {
        switch self {
        case .wrongVariant: return self
        case let .server(m): return .server(m + " (\(hint))")
        default: return self
        }
    }
}

final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var error: EvaluationError?
    func set(_ e: EvaluationError) { lock.lock(); if error == nil { error = e }; lock.unlock() }
    func get() -> EvaluationError? { lock.lock(); defer { lock.unlock() }; return error }
}

/// A progress bar with ETA on stderr (the ETA counts only items that needed the server).
final class Progress: @unchecked Sendable {
    let total: Int, fresh: Int, label: String
    let start = Date()
    private let lock = NSLock()
    private var done = 0, doneFresh = 0
    private var correct: [Int]
    private var lastPrint = Date.distantPast
    let isTTY = isatty(2) != 0

    init(total: Int, fresh: Int, label: String) {
        self.total = total; self.fresh = fresh; self.label = label
        correct = [0, 0]
    }

    func step(fresh isFresh: Bool, correct c: [Bool]) {
        lock.lock(); defer { lock.unlock() }
        done += 1
        if isFresh { doneFresh += 1 }
        for (i, ok) in c.enumerated() where ok && i < 2 { correct[i] += 1 }
        let now = Date()
        guard now.timeIntervalSince(lastPrint) > (isTTY ? 0.2 : 10) || done == total else { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let eta = doneFresh > 0 ? elapsed / Double(doneFresh) * Double(fresh - doneFresh) : 0
        let width = 24, filled = total > 0 ? width * done / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let accs = correct.prefix(c.count).enumerated().map { String(format: "%@ %.1f%%", $0.offset == 0 ? "A" : "B", 100 * Double($0.element) / Double(done)) }
        let line = String(format: "%@ [%@] %d/%d  %@  %@ elapsed, ETA %@", label, bar, done, total,
                          accs.joined(separator: "  "), Self.clock(elapsed), Self.clock(eta))
        FileHandle.standardError.write(Data(((isTTY ? "\r" : "") + line + (isTTY ? "" : "\n")).utf8))
    }

    func finish() { if isTTY { FileHandle.standardError.write(Data("\n".utf8)) } }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }
}
