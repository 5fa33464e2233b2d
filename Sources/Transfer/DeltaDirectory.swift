import Foundation

/// The one folder delta files are read from (`--delta-dir`, default `deltas/`). A request names
/// a path relative to it; anything that leaves it — absolute paths, `..`, a symlink pointing
/// out — is refused.
public struct DeltaDirectory: Sendable {
    /// The folder, symlinks resolved.
    public let root: String

    public init(path: String) throws {
        guard let resolved = Self.realPath(path) else {
            throw TransferError.badPath(path, "the delta directory does not exist (hint: --delta-dir)")
        }
        root = resolved
    }

    /// The real path of `relative` inside the directory; it must exist.
    public func resolve(_ relative: String) throws -> String {
        guard !relative.isEmpty, !relative.utf8.contains(0), relative.utf8.count <= 4096 else {
            throw TransferError.badPath(relative, "empty or malformed")
        }
        guard !relative.hasPrefix("/"), !relative.hasPrefix("~") else {
            throw TransferError.badPath(relative, "must be relative to the delta directory")
        }
        guard !relative.split(separator: "/").contains("..") else {
            throw TransferError.badPath(relative, "leaves the delta directory")
        }
        guard let real = Self.realPath(root + "/" + relative) else {
            throw TransferError.badPath(relative, "no such file in the delta directory")
        }
        guard real.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw TransferError.badPath(relative, "leaves the delta directory")
        }
        return real
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
