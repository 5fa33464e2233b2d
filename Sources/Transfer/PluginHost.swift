import Foundation
import GraftPluginABI
import LanguageModel
import TensorCore
import Tokenizers
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `GET /v1/plugins` lists.
public struct PluginInfo: Sendable, Equatable {
    public let name: String
    public let description: String
    /// major << 16 | minor
    public let abiVersion: UInt32
}

/// Services a run may use beyond the model's weights (the server supplies its tokenizer).
public struct PluginServices: Sendable {
    public var tokenize: (@Sendable (String, Bool) -> [Int])?
    public var progress: (@Sendable (Double, String) -> Void)?
    public var log: (@Sendable (Int, String) -> Void)?
    public var isCancelled: (@Sendable () -> Bool)?
    /// Reads a delta named relative to the delta directory (`VariantBuilder.readDelta(relativePath:)`).
    public var readDelta: (@Sendable (String) throws -> Delta)?
    /// 1.1: the target's tokenizer (tokenize, chat-format through model handles), and the
    /// models a run may open by configured name (`--source NAME=DIR`).
    public var tokenizer: Tokenizer?
    public var openModel: (@Sendable (String) throws -> PluginModelSource)?
    /// The pool parallel_for, gemm and model_forward run on (nil: one made for the run).
    public var pool: WorkerPool?

    public init(tokenize: (@Sendable (String, Bool) -> [Int])? = nil, progress: (@Sendable (Double, String) -> Void)? = nil,
                log: (@Sendable (Int, String) -> Void)? = nil, isCancelled: (@Sendable () -> Bool)? = nil,
                readDelta: (@Sendable (String) throws -> Delta)? = nil) {
        self.readDelta = readDelta
        self.tokenize = tokenize
        self.progress = progress
        self.log = log
        self.isCancelled = isCancelled
    }
}

/// Loads strategy plugins by name from one directory (`--plugin-dir`, default: beside the
/// executable) with `dlopen`, never from a path a request gives, and runs them against a
/// model. Plugins are never unloaded. A plugin with another ABI major version, without the
/// entry symbol, or whose run fails is refused with the reason and nothing is returned.
public final class PluginHost: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    private var loaded: [String: Loaded] = [:]

    struct Loaded {
        let handle: UnsafeMutableRawPointer
        let table: UnsafeMutablePointer<graft_plugin>
        let info: PluginInfo
    }

    public init(directory: String) {
        self.directory = directory
    }

    /// The folder holding the running executable (where `swift build` puts the plugins).
    public static var executableDirectory: String {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: path).deletingLastPathComponent().path
    }

#if os(macOS)
    static let libraryExtension = "dylib"
#else
    static let libraryExtension = "so"
#endif

    /// A plugin name: lowercase letters, digits, `-` and `_`, 1–64 characters.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F }
    }

    /// Names of the libraries in the directory that look like plugins (not yet loaded).
    public func candidates() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.compactMap { f -> String? in
            guard f.hasPrefix("lib"), f.hasSuffix("." + Self.libraryExtension) else { return nil }
            let name = String(f.dropFirst(3).dropLast(Self.libraryExtension.count + 1))
            return Self.isValidName(name) ? name : nil
        }.sorted()
    }

    /// Every plugin in the directory that loads, and why the others do not.
    public func list() -> (plugins: [PluginInfo], refused: [String: String]) {
        var ok: [PluginInfo] = [], refused: [String: String] = [:]
        for name in candidates() {
            do { ok.append(try load(name).info) } catch { refused[name] = "\(error)" }
        }
        return (ok, refused)
    }

    /// Loads (once) and checks a plugin.
    @discardableResult
    func load(_ name: String) throws -> Loaded {
        guard Self.isValidName(name) else {
            throw TransferError.plugin(name: String(name.prefix(64)), "not a plugin name (lowercase letters, digits, '-', '_')")
        }
        lock.lock()
        defer { lock.unlock() }
        if let l = loaded[name] { return l }
        let path = directory + "/lib" + name + "." + Self.libraryExtension
        guard FileManager.default.fileExists(atPath: path) else {
            throw TransferError.plugin(name: name, "no lib\(name).\(Self.libraryExtension) in the plugin directory \(directory) (hint: --plugin-dir)")
        }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw TransferError.plugin(name: name, "dlopen failed: \(String(cString: dlerror()))")
        }
        guard let symbol = dlsym(handle, GRAFT_PLUGIN_ENTRY_SYMBOL) else {
            throw TransferError.plugin(name: name, "the library exports no \(GRAFT_PLUGIN_ENTRY_SYMBOL) (not a Graft plugin, or built for another ABI)")
        }
        let entry = unsafeBitCast(symbol, to: graft_plugin_entry_fn.self)
        let table = UnsafeMutablePointer<graft_plugin>.allocate(capacity: 1)
        table.initialize(to: graft_plugin())
        table.pointee.struct_size = UInt32(MemoryLayout<graft_plugin>.size)
        var host = HostTable.make(context: nil)
        let status = entry(&host, table)
        let major = table.pointee.abi_version >> 16
        guard major == UInt32(GRAFT_PLUGIN_ABI_MAJOR) else {
            throw TransferError.plugin(name: name, "built for plugin ABI \(major).\(table.pointee.abi_version & 0xFFFF); this host speaks \(GRAFT_PLUGIN_ABI_MAJOR).x")
        }
        guard status == 0 else { throw TransferError.plugin(name: name, "its entry point failed (status \(status))") }
        guard table.pointee.struct_size >= UInt32(MemoryLayout<graft_plugin>.offset(of: \graft_plugin.run)! + MemoryLayout<Int>.size),
              table.pointee.run != nil else {
            throw TransferError.plugin(name: name, "its plugin table is too small or has no run function")
        }
        let declared = table.pointee.name.map { String(cString: $0) } ?? ""
        guard declared == name else {
            throw TransferError.plugin(name: name, "it calls itself '\(declared.prefix(64))'")
        }
        let info = PluginInfo(name: name, description: table.pointee.description.map { String(cString: $0) } ?? "",
                              abiVersion: table.pointee.abi_version)
        let l = Loaded(handle: handle, table: table, info: info)
        loaded[name] = l
        return l
    }

    /// Runs a plugin on `weights` with `params` (a JSON object as text) and returns the delta
    /// it built, or throws its error. The delta is not yet validated (`VariantBuilder` does it).
    public func run(_ name: String, params: String, weights: ModelWeights, services: PluginServices = PluginServices()) throws -> Delta {
        try run(name, params: params, weights: weights, services: services, hostTableSize: nil)
    }

    /// `hostTableSize` (tests) hands the plugin a table that claims to be that small, as an
    /// older host's would.
    func run(_ name: String, params: String, weights: ModelWeights, services: PluginServices, hostTableSize: UInt32?) throws -> Delta {
        let plugin = try load(name)
        let context = RunContext(weights: weights, services: services)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        var host = HostTable.make(context: unmanaged.toOpaque())
        if let hostTableSize { host.struct_size = min(host.struct_size, hostTableSize) }
        var error = [CChar](repeating: 0, count: 1024)
        let builder = OpaquePointer(unmanaged.toOpaque())
        let status = params.withCString { p in
            error.withUnsafeMutableBufferPointer { e in
                plugin.table.pointee.run!(plugin.table.pointee.data, &host, builder, p, e.baseAddress, e.count)
            }
        }
        if status != 0 {
            let message = String(cString: error.withUnsafeBufferPointer { $0.baseAddress! })
            throw TransferError.plugin(name: name, message.isEmpty ? "failed with status \(status)" : message)
        }
        if let failure = context.firstError { throw TransferError.plugin(name: name, "its delta was refused: \(failure)") }
        var extra = context.metadata
        extra["plugin"] = name
        extra["plugin_abi"] = "\(plugin.info.abiVersion >> 16).\(plugin.info.abiVersion & 0xFFFF)"
        return Delta(entries: context.entries,
                     metadata: DeltaMetadata(modelFingerprint: context.fingerprint, strategy: name, parameters: params, extra: extra))
    }
}
