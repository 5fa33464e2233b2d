import Foundation
import LanguageModel
import TensorCore

/// Where a variant came from: each delta's file and `__metadata__`, in order.
public struct VariantProvenance: Sendable, Equatable {
    public struct Source: Sendable, Equatable {
        /// The delta file (relative to the delta directory), or `plugin:<name>`.
        public var origin: String
        public var metadata: [String: String]
        /// `Delta.contentHash` of what was read.
        public var contentHash: String

        public init(origin: String, metadata: [String: String], contentHash: String) {
            self.origin = origin
            self.metadata = metadata
            self.contentHash = contentHash
        }
    }
    public var sources: [Source]
    /// `sha256:<hex>` over the model's fingerprint, the mode and each source's content hash in
    /// order: what the variant computes with, not its name (an evaluation's cache key).
    public var contentFingerprint: String {
        var h = SHA256Digest()
        // The storage type too: bf16-held delta values serve (slightly) different logits.
        h.update("graft-variant\u{0}" + modelFingerprint + "\u{0}" + mode.rawValue + "\u{0}" + valueType + "\u{0}")
        for s in sources { h.update(s.contentHash + "\u{0}") }
        return "sha256:" + h.hexDigest()
    }
    /// The fingerprint of the model the variant modifies.
    public var modelFingerprint: String
    public var mode: VariantMode
    public var bounds: DeltaBounds
    public var residentBytes: Int
    /// The element type unmerged delta values are held in (`f32` or `bf16`).
    public var valueType: String

    public init(sources: [Source], modelFingerprint: String, mode: VariantMode, bounds: DeltaBounds, residentBytes: Int, valueType: String = "f32") {
        self.sources = sources
        self.modelFingerprint = modelFingerprint
        self.mode = mode
        self.bounds = bounds
        self.residentBytes = residentBytes
        self.valueType = valueType
    }
}

/// Builds variants off the engine thread: reads deltas from the delta directory, validates
/// them (names, shapes, fingerprint, finite values, norms) and makes the immutable `Variant`
/// the engine publishes between steps.
public final class VariantBuilder: Sendable {
    public let weights: ModelWeights
    public let fingerprint: String
    /// The folder delta paths are relative to; resolved at each read, so it may appear later.
    public let deltaDirectory: String?
    let targets: [String: Shape]
    /// 1-D targets (norm weights, biases) → length.
    public let vectors: [String: Int]
    struct Shape: Sendable { let rows: Int, cols: Int }

    public init(weights: ModelWeights, deltaDirectory: String?) {
        self.weights = weights
        self.fingerprint = weights.fingerprint
        self.deltaDirectory = deltaDirectory
        targets = deltaTargets(of: weights).mapValues { Shape(rows: $0.rows, cols: $0.cols) }
        vectors = vectorDeltaTargets(of: weights)
    }

    /// Largest private copy a merged variant may make; nil: half of MemAvailable.
    public var mergedMemoryLimitBytes: Int? {
        get { limitLock.withLock { limit } }
        set { limitLock.withLock { limit = newValue } }
    }
    private let limitLock = NSLock()
    nonisolated(unsafe) private var limit: Int?

    /// MemAvailable from /proc/meminfo (Linux), bytes.
    static func availableMemoryBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(whereSeparator: { $0 == " " })
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    public var shapes: [String: (rows: Int, cols: Int)] { targets.mapValues { ($0.rows, $0.cols) } }

    /// Reads a delta file named relative to the delta directory.
    public func readDelta(relativePath: String) throws -> Delta {
        guard let deltaDirectory else { throw TransferError.badPath(relativePath, "no delta directory is configured") }
        return try read(path: try DeltaDirectory(path: deltaDirectory).resolve(relativePath))
    }

    /// Validates `deltas` and makes the variant (its provenance names each delta's origin).
    /// `valueType` is the element type unmerged delta values are kept in (`DeltaValueType`).
    public func build(name: String, deltas: [(origin: String, delta: Delta)], mode: VariantMode = .unmerged,
                      bounds: DeltaBounds = DeltaBounds(), valueType: DeltaValueType = .auto) throws -> (Variant, VariantProvenance) {
        var combined: [String: [DeltaEntry]] = [:]
        for (_, delta) in deltas {
            try DeltaValidator.validate(delta, weights: weights, fingerprint: fingerprint, bounds: bounds)
            for (target, entries) in delta.entries { combined[target, default: []] += entries }
        }
        if mode == .merged {
            // A merged variant holds an f32 copy of every touched layer matrix: refuse what would
            // not fit. (Embedding and lm head deltas stay unmerged; 1-D copies are tiny.)
            let needed = combined.keys.reduce(0) { sum, t in
                sum + (LayerModule.parse(t) == nil ? 0 : targets[t].map { $0.rows * $0.cols * 4 } ?? 0)
            }
            let limit = mergedMemoryLimitBytes ?? Self.availableMemoryBytes().map { $0 / 2 } ?? Int.max
            guard needed <= limit else {
                throw TransferError.outOfBounds(tensor: name, "merged mode needs \(needed >> 20) MiB of private copies; \(limit >> 20) MiB may be used (hint: mode unmerged holds only the delta)")
            }
        }
        let variant: Variant
        do {
            variant = try Variant(name: name, weights: weights, deltas: combined, mode: mode, valueType: valueType)
        } catch let error as ModelError {
            if case .badTensor(let t, let why) = error { throw TransferError.badEntry(tensor: t, why) }
            throw TransferError.badEntry(tensor: name, "\(error)")
        }
        let provenance = VariantProvenance(sources: deltas.map { .init(origin: $0.origin, metadata: $0.delta.metadata.dictionary,
                                                                       contentHash: $0.delta.contentHash) },
                                           modelFingerprint: fingerprint, mode: mode, bounds: bounds, residentBytes: variant.residentBytes,
                                           valueType: variant.valueType.rawValue.lowercased())
        return (variant, provenance)
    }

    /// Reads a delta file the operator named (`graft serve --variant NAME=PATH`): any path.
    public func readDelta(operatorPath path: String) throws -> Delta {
        guard FileManager.default.fileExists(atPath: path) else { throw TransferError.badPath(path, "no such file") }
        return try read(path: path)
    }

    /// A Graft delta file, or a PEFT adapter folder.
    func read(path: String) throws -> Delta {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return try PEFTAdapter.read(directory: path, targets: shapes, fingerprint: fingerprint)
        }
        return try DeltaFile.read(path: path, targets: shapes, vectors: vectors)
    }

    /// Reads, validates and builds a variant from delta files in the delta directory.
    public func build(name: String, deltaPaths: [String], mode: VariantMode = .unmerged,
                      bounds: DeltaBounds = DeltaBounds(), valueType: DeltaValueType = .auto) throws -> (Variant, VariantProvenance) {
        let deltas = try deltaPaths.map { (origin: $0, delta: try readDelta(relativePath: $0)) }
        return try build(name: name, deltas: deltas, mode: mode, bounds: bounds, valueType: valueType)
    }
}
