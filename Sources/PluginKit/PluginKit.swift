import Foundation
@_exported import GraftPluginABI

/// Swift over the C plugin ABI (GRAFT_PLUGIN_ABI_VERSION is now 1.1), compiled into each
/// plugin (Plugins/*). A plugin built against 1.1 still runs on a 1.0 host: the 1.1 wrappers
/// (`Host.targetModel`, `Model`, `parallelFor`, `gemm`) check the host table's struct_size
/// first and throw `PluginError` when the host lacks a service. A plugin writes
///
///     @_cdecl("graft_plugin_entry_v1")
///     public func entry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
///         PluginKit.register(plugin, name: "my-plugin", description: "…", run: run)
///     }
///     private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
///         PluginKit.run(host, builder, params, error, capacity) { host, params in … }
///     }
public enum PluginKit {
    public typealias RunFunction = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<graft_host>?, OpaquePointer?,
                                                   UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int) -> Int32

    /// Fills the plugin table (up to the host's struct_size) with static strings (plugins are
    /// never unloaded, so they live as long as the process).
    public static func register(_ plugin: UnsafeMutablePointer<graft_plugin>?, name: String, description: String,
                                abiVersion: UInt32 = GRAFT_PLUGIN_ABI_VERSION, run: RunFunction) -> Int32 {
        guard let plugin, plugin.pointee.struct_size >= UInt32(MemoryLayout<graft_plugin>.size) else { return 1 }
        plugin.pointee.abi_version = abiVersion
        plugin.pointee.struct_size = UInt32(MemoryLayout<graft_plugin>.size)
        plugin.pointee.name = UnsafePointer(strdup(name))
        plugin.pointee.description = UnsafePointer(strdup(description))
        plugin.pointee.run = run
        return 0
    }

    /// Runs `body` with the host and the parsed params; a thrown error becomes the status and
    /// message the host reports.
    public static func run(_ host: UnsafePointer<graft_host>?, _ builder: OpaquePointer?, _ params: UnsafePointer<CChar>?,
                           _ error: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                           _ body: (Host, [String: Any]) throws -> Void) -> Int32 {
        func report(_ message: String) -> Int32 {
            if let error, capacity > 0 {
                let bytes = Array(message.utf8.prefix(capacity - 1))
                for (i, b) in bytes.enumerated() { error[i] = CChar(bitPattern: b) }
                error[bytes.count] = 0
            }
            return 1
        }
        // A 1.0-sized host table is enough to run: the 1.1 wrappers check struct_size before
        // touching a 1.1 field and throw a clear error when the host lacks it.
        guard let host, host.pointee.abi_version >> 16 == UInt32(GRAFT_PLUGIN_ABI_MAJOR),
              host.pointee.struct_size >= Host.minimumSize else {
            return report("the host speaks another plugin ABI")
        }
        let text = params.map { String(cString: $0) } ?? "{}"
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            return report("params must be a JSON object")
        }
        do {
            try body(Host(table: host, builder: builder), object)
            return 0
        } catch {
            return report("\(error)")
        }
    }
}

/// A plugin's failure, with the message the host shows.
public struct PluginError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The host's services, in Swift.
public struct Host {
    let table: UnsafePointer<graft_host>
    let builder: OpaquePointer?

    var data: UnsafeMutableRawPointer? { table.pointee.data }

    public func log(_ message: String, level: Int32 = Int32(GRAFT_LOG_INFO.rawValue)) { table.pointee.log?(data, level, message) }
    public func progress(_ fraction: Double, _ message: String = "") { table.pointee.progress?(data, fraction, message) }
    public var isCancelled: Bool { (table.pointee.is_cancelled?(data) ?? 0) != 0 }

    /// config.json as the host normalised it (`hidden_size`, `num_hidden_layers`, …).
    public var config: [String: Any] {
        guard let p = table.pointee.model_config_json?(data) else { return [:] }
        return ((try? JSONSerialization.jsonObject(with: Data(String(cString: p).utf8))) as? [String: Any]) ?? [:]
    }

    public var fingerprint: String { table.pointee.model_fingerprint?(data).map { String(cString: $0) } ?? "" }

    public func shape(_ name: String) -> (rows: Int, cols: Int)? {
        var r: Int64 = 0, c: Int64 = 0
        guard table.pointee.tensor_shape?(data, name, &r, &c) == 0 else { return nil }
        return (Int(r), Int(c))
    }

    public func read(_ name: String) throws -> [Float] {
        guard let (r, c) = shape(name) else { throw PluginError("the model has no tensor \(name)") }
        var out = [Float](repeating: 0, count: r * c)
        let status = out.withUnsafeMutableBufferPointer { table.pointee.read_tensor?(data, name, $0.baseAddress, $0.count) ?? 1 }
        guard status == 0 else { throw PluginError("reading \(name) failed") }
        return out
    }

    public func tokenize(_ text: String, addSpecialTokens: Bool = false) throws -> [Int] {
        var count = 0
        guard table.pointee.tokenize?(data, text, addSpecialTokens ? 1 : 0, nil, 0, &count) == 0 else {
            throw PluginError("the host has no tokenizer")
        }
        var out = [Int32](repeating: 0, count: count)
        _ = out.withUnsafeMutableBufferPointer { table.pointee.tokenize?(data, text, addSpecialTokens ? 1 : 0, $0.baseAddress, $0.count, &count) }
        return out.map(Int.init)
    }

    private func check(_ status: Int32?) throws {
        guard status == 0 else {
            let message = table.pointee.delta_last_error?(builder).map { String(cString: $0) } ?? "refused"
            throw PluginError(message)
        }
    }

    public func addDense(_ target: String, _ values: [Float]) throws {
        try check(table.pointee.delta_add_dense?(builder, target, values, values.count))
    }

    public func addRows(_ target: String, indices: [Int32], values: [Float]) throws {
        try check(table.pointee.delta_add_rows?(builder, target, indices, indices.count, values))
    }

    public func addColumns(_ target: String, indices: [Int32], values: [Float]) throws {
        try check(table.pointee.delta_add_columns?(builder, target, indices, indices.count, values))
    }

    public func addLowRank(_ target: String, a: [Float], b: [Float], rank: Int, scale: Float) throws {
        try check(table.pointee.delta_add_low_rank?(builder, target, a, b, Int32(rank), scale))
    }

    /// Adds a delta file or PEFT adapter from the host's delta directory.
    public func addFile(_ relativePath: String) throws {
        guard offers(\.delta_add_file) else { throw PluginError("the host cannot read delta files") }
        try check(table.pointee.delta_add_file?(builder, relativePath))
    }

    public func setMetadata(_ key: String, _ value: String) throws {
        try check(table.pointee.delta_set_metadata?(builder, key, value))
    }
}
