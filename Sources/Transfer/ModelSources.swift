import Foundation
import LanguageModel
import SafeTensors
import Tokenizers

/// The models a plugin may open by name (`--source NAME=DIR`, repeatable, on `graft delta
/// build` and `graft serve`): each is opened on first use — weights memory-mapped, the
/// tokenizer (and chat template) from its folder when it has a tokenizer.json — and kept.
public final class ModelSources: @unchecked Sendable {
    /// name → model folder, in the order given.
    public let entries: [(name: String, directory: String)]
    private let lock = NSLock()
    private var opened: [String: PluginModelSource] = [:]

    public init(_ entries: [(name: String, directory: String)]) throws {
        var seen = Set<String>()
        for (name, directory) in entries {
            guard Self.isValidName(name) else {
                throw ModelSourceError("'\(name.prefix(64))' is not a source name (1–64 letters, digits, '.', '_', '-')")
            }
            guard seen.insert(name).inserted else { throw ModelSourceError("'\(name)' is given twice") }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
                throw ModelSourceError("\(name)=\(directory): no such folder")
            }
        }
        self.entries = entries
    }

    /// Parses `NAME=DIR` arguments.
    public convenience init(arguments: [String]) throws {
        try self.init(try arguments.map { spec in
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex else {
                throw ModelSourceError("'\(spec.prefix(200))' is not NAME=DIR")
            }
            return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
        })
    }

    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E
        }
    }

    /// `--source NAME=DIR` arguments that configure the same sources (for a child `graft`).
    public var arguments: [String] { entries.flatMap { ["--source", "\($0.name)=\($0.directory)"] } }

    /// Opens (once) the model configured under `name`.
    public func open(_ name: String) throws -> PluginModelSource {
        guard let directory = entries.first(where: { $0.name == name })?.directory else {
            let known = entries.map(\.name).joined(separator: ", ")
            throw ModelSourceError("no model is configured as '\(name.prefix(64))' (configured: \(known.isEmpty ? "none" : known); add one with --source NAME=DIR)")
        }
        lock.lock()
        defer { lock.unlock() }
        if let source = opened[name] { return source }
        let weights = try ModelWeights(config: try ModelConfig.load(directory: directory), storage: try SafeTensorsModel(directory: directory))
        let tokenizer = FileManager.default.fileExists(atPath: directory + "/tokenizer.json") ? try Tokenizer(directory: directory) : nil
        let source = PluginModelSource(weights: weights, tokenizer: tokenizer)
        opened[name] = source
        return source
    }

    /// What PluginServices.openModel takes: nil when no source is configured (open_model
    /// then says how to configure one).
    public var openModel: (@Sendable (String) throws -> PluginModelSource)? {
        if entries.isEmpty { return nil }
        return { @Sendable [self] name in try open(name) }
    }
}

/// A `--source` that is malformed, unknown or cannot be opened.
public struct ModelSourceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ message: String) { description = message }
}
