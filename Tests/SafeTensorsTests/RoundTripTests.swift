import Foundation
import SafeTensors
import TensorCore
import Testing

@Suite struct RoundTripTests {
    @Test(arguments: DType.allCases)
    func everyDTypeAndShape(dtype: DType) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SplitMix64(seed: UInt64(dtype.size) &* 7919 &+ UInt64(dtype.rawValue.utf8.count))
        let shapes: [String: [Int]] = [
            "scalar": [], "empty": [0], "empty.rows": [3, 0], "vector": [5], "cube": [2, 3, 4],
        ]
        var writer = SafeTensorsWriter(metadata: ["format": "pt", "dtype": dtype.rawValue])
        var expected: [String: [UInt8]] = [:]
        for (name, shape) in shapes.sorted(by: { $0.key < $1.key }) {
            let bytes = randomBytes(shape.reduce(1, *) * dtype.size, &rng)
            try writer.add(name, dtype: dtype, shape: shape, bytes: bytes)
            expected[name] = bytes
        }
        let path = dir.file("model.safetensors")
        try writer.write(to: path)

        let file = try SafeTensorsFile(path: path)
        #expect(file.names == shapes.keys.sorted())
        #expect(file.metadata == ["format": "pt", "dtype": dtype.rawValue])
        #expect(file.dataOffset % 8 == 0)
        for (name, shape) in shapes {
            let info = try file.info(name)
            #expect(info.name == name)
            #expect(info.dtype == dtype)
            #expect(info.shape == shape)
            #expect(info.elementCount == shape.reduce(1, *))
            #expect(info.byteCount == info.elementCount * dtype.size)
            #expect(info.byteOffset % dtype.size == 0, "the writer keeps tensors naturally aligned")
            #expect(Array(try file.data(name)) == expected[name])
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"],
                "no temporary file left behind")
    }

    /// Files of 2 MiB and more are mapped on a huge-page boundary (SafeTensorsFile.map); the
    /// bytes read back the same, and nothing of the address range reserved to find that boundary
    /// stays mapped beside the file.
    @Test func largeFilesMapOnAHugePageBoundary() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SplitMix64(seed: 2 << 20)
        for count in [5 << 20 + 3, 4 << 20 - 200] {
            let bytes = randomBytes(count, &rng)
            var writer = SafeTensorsWriter()
            try writer.add("big", dtype: .u8, shape: [bytes.count], bytes: bytes)
            let path = dir.file("model-\(count).safetensors")
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)
            #expect(Array(try file.data("big")) == bytes)
            #if os(Linux)
            let base = UInt(bitPattern: file.bytes.baseAddress)
            #expect(base % (2 << 20) == 0)
            // /proc/self/maps: "start-end perms ...". The file's mapping starts at base; a leftover
            // of the reservation would be an inaccessible (---p) mapping touching it.
            // Read line by line with stdio: Foundation's whole-file read of a /proc file stops
            // after its first few kilobytes.
            var maps: [(start: UInt, end: UInt, perms: String)] = []
            let f = try #require(fopen("/proc/self/maps", "r"))
            var buffer: UnsafeMutablePointer<CChar>? = nil, capacity = 0
            while getline(&buffer, &capacity, f) > 0, let buffer {
                let fields = String(cString: buffer).split(separator: " ")
                let range = fields[0].split(separator: "-").map { UInt($0, radix: 16) ?? 0 }
                maps.append((start: range[0], end: range[1], perms: String(fields[1])))
            }
            free(buffer)
            fclose(f)
            let mine = try #require(maps.first { $0.start == base })
            #expect(!maps.contains { $0.start == mine.end && $0.perms.hasPrefix("---") }, "the reservation's tail is still mapped")
            #expect(!maps.contains { $0.end == base && $0.perms.hasPrefix("---") }, "the reservation's head is still mapped")
            #endif
        }
    }

    /// The writer starts the data on a 64-byte line and puts tensors of whole lines first, so
    /// each of them starts on a line (the kernels' row loads are then never split over two).
    @Test func wholeLineTensorsStartOnALine() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SplitMix64(seed: 64)
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        let tensors: [(String, DType, [Int])] = [
            ("a.norm", .f32, [3]), ("b.weight", .bf16, [6, 32]), ("c.bias", .bf16, [5]),
            ("d.weight", .f32, [4, 16]), ("e.scale", .f64, [1]), ("f.weight", .f16, [2, 96]), ("g.ids", .u8, [7]),
        ]
        for (name, dtype, shape) in tensors {
            try writer.add(name, dtype: dtype, shape: shape, bytes: randomBytes(shape.reduce(1, *) * dtype.size, &rng))
        }
        let path = dir.file("model.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.dataOffset % 64 == 0)
        for (name, dtype, _) in tensors {
            let info = try file.info(name)
            if info.byteCount % 64 == 0 { #expect(info.byteOffset % 64 == 0, "\(name) starts off a line") }
            #expect(info.byteOffset % dtype.size == 0, "\(name) is not naturally aligned")
        }
    }

    @Test func manyTensorsOfMixedTypes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SplitMix64(seed: 42)
        var writer = SafeTensorsWriter()
        var expected: [String: (DType, [Int], [UInt8])] = [:]
        for index in 0..<1000 {
            let dtype = DType.allCases[index % DType.allCases.count]
            let shape = [Int.random(in: 0...4, using: &rng), Int.random(in: 1...7, using: &rng)]
            let bytes = randomBytes(shape.reduce(1, *) * dtype.size, &rng)
            let name = "model.layers.\(index).weight"
            try writer.add(name, dtype: dtype, shape: shape, bytes: bytes)
            expected[name] = (dtype, shape, bytes)
        }
        #expect(writer.tensorCount == 1000)
        let path = dir.file("many.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensors.count == 1000)
        #expect(file.metadata.isEmpty)
        for (name, (dtype, shape, bytes)) in expected {
            let info = try file.info(name)
            #expect(info.dtype == dtype && info.shape == shape)
            #expect(Array(try file.data(name)) == bytes)
        }
    }

    @Test func typedValuesAndFillClosures() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var writer = SafeTensorsWriter()
        try writer.add("f32", dtype: .f32, shape: [2, 2], values: [Float(1), -2, 0.5, .infinity])
        try writer.add("bf16", dtype: .bf16, shape: [3], values: [1.0, -3.5, 1e-3].map { floatToBF16($0) })
        try writer.add("i64", dtype: .i64, shape: [2], values: [Int64.min, Int64.max])
        try writer.add("filled", dtype: .i32, shape: [4]) { buffer in
            for i in 0..<4 { buffer.storeBytes(of: Int32(i * i), toByteOffset: i * 4, as: Int32.self) }
        }
        let path = dir.file("typed.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        let f32 = try file.data("f32")
        #expect((0..<4).map { f32.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } == [1, -2, 0.5, .infinity])
        let bf16 = try file.data("bf16")
        #expect((0..<3).map { bf16ToFloat(bf16.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
                == [1.0, -3.5, 1e-3].map { bf16ToFloat(floatToBF16($0)) })
        let i64 = try file.data("i64")
        #expect(i64.loadUnaligned(fromByteOffset: 0, as: Int64.self) == .min)
        #expect(i64.loadUnaligned(fromByteOffset: 8, as: Int64.self) == .max)
        let filled = try file.data("filled")
        #expect((0..<4).map { filled.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) } == [0, 1, 4, 9])
    }

    /// The header is what the reference package writes: sorted keys, padded to 8 bytes with spaces.
    @Test func headerLayout() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var writer = SafeTensorsWriter(metadata: ["z": "last", "a": "first \"q\"\n"])
        try writer.add("b", dtype: .f16, shape: [1], bytes: [0, 0x3C])
        try writer.add("a", dtype: .f32, shape: [1], bytes: [0, 0, 0x80, 0x3F])
        let path = dir.file("layout.safetensors")
        try writer.write(to: path)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        let length = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        #expect(length % 8 == 0)
        let header = String(decoding: bytes[8..<(8 + length)], as: UTF8.self)
        let json = #"{"__metadata__":{"a":"first \"q\"\n","z":"last"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}}"#
        #expect(header == json + String(repeating: " ", count: length - json.utf8.count))
        #expect(bytes.count == 8 + length + 6)
        let file = try SafeTensorsFile(path: path)
        #expect(file.metadata == ["z": "last", "a": "first \"q\"\n"])
    }

    /// Replacing a file renames over it: a mapping of the old file keeps reading the old bytes.
    @Test func replacingKeepsOldMappingsValid() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("model.safetensors")
        var first = SafeTensorsWriter()
        try first.add("w", dtype: .u8, shape: [4], bytes: [1, 2, 3, 4])
        try first.write(to: path)
        let old = try SafeTensorsFile(path: path)

        var second = SafeTensorsWriter()
        try second.add("w", dtype: .u8, shape: [2], bytes: [9, 9])
        try second.write(to: path)
        #expect(Array(try old.data("w")) == [1, 2, 3, 4])
        // withData keeps a temporary file object alive while the view is used.
        #expect(try SafeTensorsFile(path: path).withData("w") { Array($0) } == [9, 9])
    }

    @Test func writerRejectsBadInput() throws {
        var writer = SafeTensorsWriter()
        try writer.add("x", dtype: .f32, shape: [2], bytes: [UInt8](repeating: 0, count: 8))
        let duplicate = #expect(throws: SafeTensorsError.self) {
            try writer.add("x", dtype: .f32, shape: [2], bytes: [UInt8](repeating: 0, count: 8))
        }
        #expect(duplicate.map(caseName) == "duplicateTensor")
        let short = #expect(throws: SafeTensorsError.self) {
            try writer.add("y", dtype: .bf16, shape: [4, 8], bytes: [UInt8](repeating: 0, count: 100))
        }
        #expect(short?.description == "tensor 'y': 100 bytes but shape [4, 8] × BF16 needs 64")
        let reserved = #expect(throws: SafeTensorsError.self) {
            try writer.add("__metadata__", dtype: .u8, shape: [0], bytes: [])
        }
        #expect(reserved.map(caseName) == "invalidTensor")
        let overflow = #expect(throws: SafeTensorsError.self) {
            try writer.add("big", dtype: .f64, shape: [1 << 40, 1 << 40]) { _ in }
        }
        #expect(overflow?.description.contains("overflows") == true)
        let width = #expect(throws: SafeTensorsError.self) {
            try writer.add("w", dtype: .bf16, shape: [1], values: [Float(1)])
        }
        #expect(width?.description.contains("Float is 4 bytes but BF16 is 2") == true)
        let negative = #expect(throws: SafeTensorsError.self) {
            try writer.add("n", dtype: .u8, shape: [-1], bytes: [])
        }
        #expect(negative.map(caseName) == "invalidTensor")
    }

    /// A fill closure that throws leaves the target untouched and no temporary behind.
    @Test func failedWriteLeavesTargetUntouched() throws {
        struct Boom: Error {}
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write([1, 2, 3], to: "model.safetensors")
        var writer = SafeTensorsWriter()
        try writer.add("x", dtype: .u8, shape: [1]) { _ in throw Boom() }
        #expect(throws: Boom.self) { try writer.write(to: path) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([1, 2, 3]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])

        let missingFolder = #expect(throws: SafeTensorsError.self) {
            try writer.write(to: dir.file("no/such/folder/x.safetensors"))
        }
        #expect(missingFolder.map(caseName) == "writeFailed")
    }
}
