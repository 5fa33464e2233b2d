import PluginKit

/// `zero-delta`: the empty delta — the base model as a strategy (the fallback arm).
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "zero-delta", description: "The empty delta: a variant identical to base.", run: run)
}

private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
    PluginKit.run(host, builder, params, error, capacity) { host, _ in
        try host.setMetadata("note", "empty delta")
        host.progress(1, "done")
    }
}
