import Foundation
import LanguageModel
import SafeTensors
import TensorCore
import Testing
@testable import Transfer

/// Deltas a careless or hostile caller might hand the server: each is refused with a message
/// that says what is wrong, and nothing is built.
@Suite struct HostileDeltaTests {
    let dir = scratchDirectory("hostile")
    var builder: VariantBuilder { VariantBuilder(weights: tinyWeights, deltaDirectory: dir) }
    var fingerprint: String { tinyWeights.fingerprint }
    let up0 = LayerModule.up.tensorName(layer: 0)   // [160, 64]

    func write(_ name: String, metadata: [String: String]? = nil, _ fill: (inout SafeTensorsWriter) throws -> Void) throws {
        var w = SafeTensorsWriter(metadata: metadata ?? ["format": "graft-delta", "format_version": "1",
                                                        "model_fingerprint": fingerprint, "strategy": "hostile"])
        try fill(&w)
        try w.write(to: dir + "/" + name)
    }

    func refusal(_ path: String, bounds: DeltaBounds = DeltaBounds()) -> String? {
        do {
            _ = try builder.build(name: "x", deltaPaths: [path], bounds: bounds)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func wrongShapeIsRefused() throws {
        try write("shape.safetensors") { try $0.add(up0 + ".dense", dtype: .f32, shape: [64, 160], values: [Float](repeating: 0, count: 64 * 160)) }
        #expect(refusal("shape.safetensors")?.contains("shape [64, 160], expected [160, 64]") == true)
        try write("rows.safetensors") {
            try $0.add(up0 + ".rows", dtype: .i32, shape: [2], values: [Int32(1), 2])
            try $0.add(up0 + ".row_values", dtype: .f32, shape: [2, 63], values: [Float](repeating: 0, count: 126))
        }
        #expect(refusal("rows.safetensors")?.contains("expected [2, 64]") == true)
        try write("index.safetensors") {
            try $0.add(up0 + ".rows", dtype: .i32, shape: [1], values: [Int32(160)])
            try $0.add(up0 + ".row_values", dtype: .f32, shape: [1, 64], values: [Float](repeating: 0, count: 64))
        }
        #expect(refusal("index.safetensors")?.contains("index 160 outside 0..<160") == true)
        try write("half.safetensors") { try $0.add(up0 + ".lora_a", dtype: .f32, shape: [2, 64], values: [Float](repeating: 0, count: 128)) }
        #expect(refusal("half.safetensors")?.contains("comes without") == true)
    }

    @Test func unknownNamesAreRefused() throws {
        try write("unknown.safetensors") {
            try $0.add("model.layers.7.mlp.up_proj.weight.dense", dtype: .f32, shape: [1], values: [Float(0)])
        }
        #expect(refusal("unknown.safetensors")?.contains("not a matrix of this model") == true)
        try write("suffix.safetensors") { try $0.add(up0, dtype: .f32, shape: [1], values: [Float(0)]) }
        #expect(refusal("suffix.safetensors")?.contains("none of the suffixes") == true)
    }

    @Test func nonFiniteValuesAreRefused() throws {
        for (i, bad) in [Float.nan, .infinity, -.infinity].enumerated() {
            var v = seededValues(160 * 64, seed: 1)
            v[1234] = bad
            try write("nf\(i).safetensors") { try $0.add(up0 + ".dense", dtype: .f32, shape: [160, 64], values: v) }
            #expect(refusal("nf\(i).safetensors", bounds: .unbounded)?.contains("NaN or infinite") == true)
        }
        try write("nfscale.safetensors", metadata: ["format": "graft-delta", "format_version": "1", "model_fingerprint": fingerprint,
                                                     "lora_scale": "inf"]) {
            try $0.add(up0 + ".lora_a", dtype: .f32, shape: [1, 64], values: seededValues(64, seed: 2))
            try $0.add(up0 + ".lora_b", dtype: .f32, shape: [160, 1], values: seededValues(160, seed: 3))
        }
        #expect(refusal("nfscale.safetensors")?.contains("no finite lora_scale") == true)
    }

    @Test func hugeNormsAreRefusedUnlessTheBoundsAllowThem() throws {
        try write("huge.safetensors") {
            try $0.add(up0 + ".rows", dtype: .i32, shape: [1], values: [Int32(5)])
            try $0.add(up0 + ".row_values", dtype: .f32, shape: [1, 64], values: [Float](repeating: 1e6, count: 64))
        }
        #expect(refusal("huge.safetensors")?.contains("exceeds the bound") == true)
        // ±1 everywhere: the paper's unaligned baseline. Refused by default, accepted when the
        // variant's bounds say so.
        try write("ones.safetensors") {
            try $0.add(up0 + ".dense", dtype: .f32, shape: [160, 64], values: (0..<(160 * 64)).map { Float($0 % 2 == 0 ? 1 : -1) })
        }
        #expect(refusal("ones.safetensors")?.contains("‖Δ‖/‖W‖") == true)
        #expect(refusal("ones.safetensors", bounds: DeltaBounds(maxAbsValue: 1, maxRelativeNorm: .infinity)) == nil)
        try write("lora.safetensors", metadata: ["format": "graft-delta", "format_version": "1", "model_fingerprint": fingerprint,
                                                  "lora_scale": "1000"]) {
            try $0.add(up0 + ".lora_a", dtype: .f32, shape: [1, 64], values: [Float](repeating: 1, count: 64))
            try $0.add(up0 + ".lora_b", dtype: .f32, shape: [160, 1], values: [Float](repeating: 1, count: 160))
        }
        #expect(refusal("lora.safetensors")?.contains("exceeds the bound") == true)
    }

    @Test func anotherModelsDeltaIsRefused() throws {
        try DeltaFile.write(sampleDelta(fingerprint: "fnv1a64:0000000000000000"), shapes: builder.shapes, to: dir + "/other.safetensors")
        #expect(refusal("other.safetensors")?.contains("made for another model") == true)
        try write("nofp.safetensors", metadata: ["format": "graft-delta", "format_version": "1"]) { _ in }
        #expect(refusal("nofp.safetensors")?.contains("no model_fingerprint") == true)
        try write("v2.safetensors", metadata: ["format": "graft-delta", "format_version": "2", "model_fingerprint": fingerprint]) { _ in }
        #expect(refusal("v2.safetensors")?.contains("format_version '2'") == true)
    }

    @Test func truncatedAndGarbageFilesAreRefused() throws {
        try DeltaFile.write(sampleDelta(fingerprint: fingerprint), shapes: builder.shapes, to: dir + "/good.safetensors")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/good.safetensors"))
        for cut in [0, 4, 8, 100, bytes.count / 2, bytes.count - 1] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: dir + "/cut.safetensors"))
            #expect(refusal("cut.safetensors")?.contains("unreadable") == true, "cut at \(cut)")
        }
        try Data("not a safetensors file at all".utf8).write(to: URL(fileURLWithPath: dir + "/junk.safetensors"))
        #expect(refusal("junk.safetensors")?.contains("unreadable") == true)
        #expect(refusal("good.safetensors") == nil)
    }

    @Test func pathsOutsideTheDeltaDirectoryAreRefused() throws {
        let outside = scratchDirectory("outside")
        try DeltaFile.write(sampleDelta(fingerprint: fingerprint), shapes: builder.shapes, to: outside + "/d.safetensors")
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.safetensors", withDestinationPath: outside + "/d.safetensors")
        try FileManager.default.createSymbolicLink(atPath: dir + "/linkdir", withDestinationPath: outside)
        for path in [outside + "/d.safetensors", "../" + URL(fileURLWithPath: outside).lastPathComponent + "/d.safetensors",
                     "link.safetensors", "linkdir/d.safetensors", "a/../../x", "~/x", "", "missing.safetensors", "a\u{0}b"] {
            let message = refusal(path)
            #expect(message?.contains("delta path") == true, "\(path): \(message ?? "accepted")")
        }
    }
}
