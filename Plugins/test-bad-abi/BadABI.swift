import PluginKit

/// A plugin built for an ABI major version this host does not speak: the host must refuse it.
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "test-bad-abi", description: "Claims plugin ABI 99.0 (tests).", abiVersion: 99 << 16, run: run)
}

private let run: PluginKit.RunFunction = { _, _, _, _, _, _ in 0 }
