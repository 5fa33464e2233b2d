import Foundation
import SafeTensors
import Testing

/// Seeded random damage to a valid file: every outcome must be a clean open whose tensors lie
/// inside the file, or a typed `SafeTensorsError` — never a crash.
@Suite struct FuzzTests {
    /// GRAFT_FUZZ_ITERATIONS and GRAFT_FUZZ_SEED run it longer or differently by hand.
    static let iterations = ProcessInfo.processInfo.environment["GRAFT_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 10_000
    static let seed = ProcessInfo.processInfo.environment["GRAFT_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5AFE_7E45

    private func validFile() throws -> [UInt8] {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var writer = SafeTensorsWriter(metadata: ["format": "pt", "graft.delta": "1"])
        try writer.add("model.embed_tokens.weight", dtype: .bf16, shape: [4, 3], bytes: Array(0..<24))
        try writer.add("model.norm.weight", dtype: .f32, shape: [3], bytes: Array(0..<12))
        try writer.add("scale", dtype: .f64, shape: [], bytes: Array(0..<8))
        try writer.add("empty", dtype: .i32, shape: [0, 2], bytes: [])
        try writer.add("rows", dtype: .i64, shape: [2], bytes: Array(0..<16))
        let path = dir.file("valid.safetensors")
        try writer.write(to: path)
        return try Array(Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Bytes a JSON mutation is likely to make interesting.
    private static let jsonBytes = Array(#"{}[]":,-.0123456789eE+ \u"#.utf8) + [0x00, 0x80, 0xFF, 0xC3]

    /// `headerEnd` is where the valid file's JSON ends.
    private func mutate(_ input: [UInt8], headerEnd: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !bytes.isEmpty else { break }
            // Mostly aim at the header, where the parsing is.
            let inHeader = Int.random(in: 0..<max(1, min(bytes.count, headerEnd)), using: &rng)
            let anywhere = Int.random(in: 0..<bytes.count, using: &rng)
            let at = Bool.random(using: &rng) || Bool.random(using: &rng) ? inHeader : anywhere
            switch Int.random(in: 0..<9, using: &rng) {
            case 0: bytes[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            case 1: bytes[at] = Self.jsonBytes.randomElement(using: &rng) ?? 0
            case 2: bytes[at] = UInt8.random(in: 0...255, using: &rng)
            case 3: bytes.removeSubrange(at...)  // truncate
            case 4:  // splice a copy of another stretch of the header in
                let from = Int.random(in: 0..<max(1, min(bytes.count, headerEnd)), using: &rng)
                let length = Int.random(in: 1...24, using: &rng)
                bytes.insert(contentsOf: bytes[from..<min(bytes.count, from + length)], at: at)
            case 5: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...16, using: &rng)))
            case 6:  // a digit inside a number becomes a huge or negative one
                bytes.insert(contentsOf: Array(["9999999999999999999999", "-", "9007199254740993", "1e9", ".5"]
                    .randomElement(using: &rng)?.utf8 ?? "".utf8), at: at)
            case 7:  // header length ± a little, or random
                let near = UInt64(max(0, headerEnd - 8 + Int.random(in: -16...16, using: &rng)))
                let length = Bool.random(using: &rng) ? near : rng.next() >> UInt64.random(in: 0..<64, using: &rng)
                withUnsafeBytes(of: length.littleEndian) { for i in 0..<min(8, bytes.count) { bytes[i] = $0[i] } }
            default:  // pad or extend the data region
                bytes += [UInt8](repeating: 0x20, count: Int.random(in: 1...9, using: &rng))
            }
        }
        return bytes
    }

    @Test func mutationsNeverCrash() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let valid = try validFile()
        let headerEnd = 8 + valid[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        var rng = SplitMix64(seed: Self.seed)
        var opened = 0
        var errors: [String: Int] = [:]
        let path = dir.file("fuzz.safetensors")
        for _ in 0..<Self.iterations {
            let bytes = mutate(valid, headerEnd: headerEnd, &rng)
            try writeFile(bytes, to: path)
            do {
                let file = try SafeTensorsFile(path: path)
                opened += 1
                var checksum = 0
                for name in file.names {
                    let info = try file.info(name)
                    #expect(info.byteOffset >= file.dataOffset && info.byteOffset + info.byteCount <= file.fileSize)
                    for byte in try file.data(name) { checksum &+= Int(byte) }
                }
                _ = checksum
            } catch let error as SafeTensorsError {
                errors[caseName(error), default: 0] += 1
                #expect(!error.description.isEmpty)
            }
        }
        // Both outcomes happen, and the damage reaches many different checks.
        #expect(opened > 0)
        #expect(errors.count >= 10, "\(errors)")
        if ProcessInfo.processInfo.environment["GRAFT_FUZZ_ITERATIONS"] != nil { print("opened \(opened), errors \(errors)") }
    }
}
