import Foundation
import LanguageModel
import Testing
@testable import Transfer

/// The built plugins (`swift build` puts them beside the test bundle), loaded with dlopen as
/// the server loads them.
@Suite struct PluginHostTests {
    let host = PluginHost(directory: PluginHost.executableDirectory)

    func refusal(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    @Test func listsTheBuiltPluginsAndRefusesTheMismatchedOne() {
        let (plugins, refused) = host.list()
        let names = plugins.map(\.name)
        #expect(names.contains("zero-delta") && names.contains("random-sparse"), "plugins in \(host.directory): \(names)")
        #expect(plugins.allSatisfy { $0.abiVersion >> 16 == 1 })
        #expect(refused["test-bad-abi"]?.contains("built for plugin ABI 99.0; this host speaks 1.x") == true, "\(refused)")
    }

    @Test func zeroDeltaIsEmpty() throws {
        let delta = try host.run("zero-delta", params: "{}", weights: tinyWeights)
        #expect(delta.entries.isEmpty)
        #expect(delta.metadata.strategy == "zero-delta")
        #expect(delta.metadata.modelFingerprint == tinyWeights.fingerprint)
        #expect(delta.metadata.extra["note"] == "empty delta")
        let (variant, _) = try VariantBuilder(weights: tinyWeights, deltaDirectory: nil).build(name: "z", deltas: [("plugin:zero-delta", delta)])
        #expect(variant.deltas.isEmpty)
    }

    @Test func randomSparseIsSeededRowSparseAtTheGivenDensity() throws {
        let params = #"{"seed": 7, "scale": 0.02, "density": 0.25}"#
        let progress = ProgressLog()
        let a = try host.run("random-sparse", params: params, weights: tinyWeights,
                             services: PluginServices(progress: { f, _ in progress.add(f) }))
        let b = try host.run("random-sparse", params: params, weights: tinyWeights)
        let c = try host.run("random-sparse", params: #"{"seed": 8, "scale": 0.02, "density": 0.25}"#, weights: tinyWeights)
        #expect(a.entries == b.entries)
        #expect(a.entries != c.entries)
        #expect(a.entries.count == 2 * 4)   // 2 layers × up, down, v, o
        guard case .rows(let idx, let values)? = a.entries[LayerModule.up.tensorName(layer: 1)]?.first else {
            Issue.record("no row entry")
            return
        }
        #expect(idx.count == 40)                 // 25% of 160 rows
        #expect(values.count == 40 * 64)
        #expect(values.allSatisfy { abs($0) <= 0.02 })
        #expect(a.metadata.extra["seed"] == "7")
        #expect(progress.values.last == 1)
        let (variant, provenance) = try VariantBuilder(weights: tinyWeights, deltaDirectory: nil)
            .build(name: "r", deltas: [("plugin:random-sparse", a)])
        #expect(variant.deltas.count == 8)
        #expect(provenance.sources[0].metadata["parameters"] == params)
    }

    @Test func deltaFileReadsOnlyInsideTheDeltaDirectory() throws {
        let dir = scratchDirectory("plugin-deltas")
        let builder = VariantBuilder(weights: tinyWeights, deltaDirectory: dir)
        let sample = sampleDelta(fingerprint: builder.fingerprint)
        try DeltaFile.write(sample, shapes: builder.shapes, to: dir + "/d.safetensors")
        let services = PluginServices(readDelta: { try builder.readDelta(relativePath: $0) })
        let delta = try host.run("delta-file", params: #"{"path": "d.safetensors"}"#, weights: tinyWeights, services: services)
        #expect(delta.entries == sample.entries)
        #expect(delta.metadata.extra["source_strategy"] == "test")
        for path in ["../d.safetensors", "/etc/passwd", "missing.safetensors"] {
            #expect(refusal { _ = try host.run("delta-file", params: "{\"path\": \"\(path)\"}", weights: tinyWeights, services: services) }?
                .contains("delta path") == true, "\(path)")
        }
        #expect(refusal { _ = try host.run("delta-file", params: "{}", weights: tinyWeights, services: services) }?.contains("params.path") == true)
    }

    @Test func failuresAreRefusedWithTheirReason() throws {
        #expect(refusal { _ = try host.run("random-sparse", params: #"{"density": 2}"#, weights: tinyWeights) }?
            .contains("density must be in (0, 1], got 2") == true)
        #expect(refusal { _ = try host.run("random-sparse", params: #"{"modules": ["mlp.nope"]}"#, weights: tinyWeights) }?
            .contains("no matrix model.layers.0.mlp.nope.weight") == true)
        #expect(refusal { _ = try host.run("random-sparse", params: "[1]", weights: tinyWeights) }?.contains("JSON object") == true)
        #expect(refusal { _ = try host.run("test-bad-abi", params: "{}", weights: tinyWeights) }?.contains("ABI 99.0") == true)
        #expect(refusal { _ = try host.run("nope", params: "{}", weights: tinyWeights) }?.contains("no libnope.") == true)
        for name in ["../zero-delta", "/tmp/x", "Zero", "", "a b"] {
            #expect(refusal { _ = try host.run(name, params: "{}", weights: tinyWeights) }?.contains("not a plugin name") == true, "\(name)")
        }
    }

    @Test func librariesThatAreNotPluginsAreRefused() throws {
        let dir = scratchDirectory("plugins")
        try Data("not an ELF file".utf8).write(to: URL(fileURLWithPath: dir + "/libgarbage.so"))
        let other = PluginHost(directory: dir)
        #expect(refusal { _ = try other.run("garbage", params: "{}", weights: tinyWeights) }?.contains("dlopen failed") == true)
        // A real shared library without the entry symbol.
        if let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6",
                       "/usr/lib/aarch64-linux-gnu/libm.so.6"].first(where: { FileManager.default.fileExists(atPath: $0) }) {
            try FileManager.default.copyItem(atPath: libm, toPath: dir + "/libnosym.so")
            #expect(refusal { _ = try other.run("nosym", params: "{}", weights: tinyWeights) }?.contains("exports no graft_plugin_entry_v1") == true)
        }
    }
}

final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Double] = []
    func add(_ v: Double) { lock.lock(); list.append(v); lock.unlock() }
    var values: [Double] { lock.lock(); defer { lock.unlock() }; return list }
}
