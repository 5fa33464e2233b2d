import PluginKit

/// `delta-file`: a Graft delta file or PEFT adapter folder from the host's delta directory
/// (params: `path`, relative to it; the host refuses paths that leave it).
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "delta-file", description: "Load a delta file or PEFT adapter (params: path, relative to the delta directory).", run: run)
}

private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
    PluginKit.run(host, builder, params, error, capacity) { host, params in
        guard let path = params["path"] as? String else { throw PluginError("params.path (a delta file relative to the delta directory) is required") }
        try host.addFile(path)
        try host.setMetadata("source_path", path)
    }
}
