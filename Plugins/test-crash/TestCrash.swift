import Foundation
import PluginKit

/// `test-crash`: a plugin for the server's tests of plugin isolation. Params: `abort` (true:
/// the process aborts, as a crashing plugin would), `hold` (a path: the run creates
/// `<hold>.started`, then waits until `<hold>` exists or the run is cancelled, so a test can keep
/// a build in flight as long as it needs). Otherwise, or once released, the empty delta.
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "test-crash", description: "Aborts or holds its run when asked (tests; params: abort, hold).", run: run)
}

private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
    PluginKit.run(host, builder, params, error, capacity) { host, params in
        if params["abort"] as? Bool == true { abort() }
        if let hold = params["hold"] as? String {
            _ = FileManager.default.createFile(atPath: hold + ".started", contents: nil)
            // Bounded, so that a forgotten hold never leaves a process behind for good.
            let deadline = Date().addingTimeInterval(600)
            while !FileManager.default.fileExists(atPath: hold) {
                if host.isCancelled || Date() > deadline { throw PluginError("the hold was never released") }
                usleep(5000)
            }
        }
        try host.setMetadata("note", "empty delta")
        host.progress(1, "done")
    }
}
