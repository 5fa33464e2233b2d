import LanguageModel
import Transfer

/// What a variant was built from, so `PUT` can rebuild it.
struct VariantSpec: Sendable {
    /// Delta paths relative to the delta directory (API) or as the operator gave them (CLI).
    var deltas: [String]
    /// Or a strategy plugin from the plugin directory and its params (a JSON object as text).
    var plugin: String?
    var params = "{}"
    var operatorPaths = false
    var mode: VariantMode = .unmerged
    var bounds = DeltaBounds()
    /// The element type unmerged delta values are held in (`delta_dtype`).
    var valueType: DeltaValueType = .auto
}

/// The served variants, owned by the loop thread. A request resolves its `model` here once, at
/// admission, and its job holds the `Variant` until it ends: replacing or deleting a name
/// swaps this table only, never weights under a running sequence; ARC frees a removed
/// variant when its last job ends.
final class VariantRegistry {
    struct Entry {
        let variant: Variant
        let provenance: VariantProvenance
        let spec: VariantSpec
        let created: Int
        /// Produced non-finite logits: requests for it are served by base.
        var quarantined = false
    }

    private(set) var entries: [String: Entry] = [:]
    /// The variant requests without `model` get; nil is base.
    private(set) var defaultName: String?
    /// Builds in flight, by name: a second POST/PUT for one gets 409. `DELETE` drops the name's
    /// build (and cancels it): that build may no longer publish.
    struct Build {
        let id: Int
        var cancel: (() -> Void)?
    }
    private(set) var builds: [String: Build] = [:]
    private var nextBuild = 1

    /// Starts a build of `name`; nil when one is in flight.
    func beginBuild(_ name: String) -> Int? {
        guard builds[name] == nil else { return nil }
        defer { nextBuild += 1 }
        builds[name] = Build(id: nextBuild)
        return nextBuild
    }

    /// How to cancel build `id` (its child process), if it is still the name's build.
    func setCancel(_ name: String, id: Int, _ cancel: @escaping () -> Void) {
        guard builds[name]?.id == id else { return }
        builds[name]?.cancel = cancel
    }

    /// Ends build `id`: false when a `DELETE` dropped it meanwhile (then it must not publish).
    func endBuild(_ name: String, id: Int) -> Bool {
        guard builds[name]?.id == id else { return false }
        builds[name] = nil
        return true
    }

    /// Drops the name's build in flight and cancels it; false when there is none.
    func dropBuild(_ name: String) -> Bool {
        guard let build = builds.removeValue(forKey: name) else { return false }
        build.cancel?()
        return true
    }

    var names: [String] { entries.keys.sorted() }

    subscript(name: String) -> Entry? { entries[name] }

    func publish(_ entry: Entry) { entries[entry.variant.name] = entry }

    /// Removes a name; the default falls back to base when it was the default.
    @discardableResult
    func remove(_ name: String) -> Entry? {
        if defaultName == name { defaultName = nil }
        return entries.removeValue(forKey: name)
    }

    func setDefault(_ name: String?) { defaultName = name }

    /// Marks the entry holding this very variant (not a later one under the same name).
    func quarantine(_ variant: Variant) {
        guard let entry = entries[variant.name], entry.variant === variant else { return }
        entries[variant.name]?.quarantined = true
    }

    var quarantinedCount: Int { entries.values.filter(\.quarantined).count }

    /// A variant name a client may register: letters, digits, `.`, `_`, `-`, 1–64 characters.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name != "." && name != ".."
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
            }
    }
}
