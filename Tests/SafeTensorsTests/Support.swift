import Foundation
import SafeTensors
import Testing

/// A fresh folder under the system temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "graft-safetensors-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let target = file(name)
        try writeFile(bytes, to: target)
        return target
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Plain open/write/close (Foundation's Data.write is slow here, and the fuzz test writes thousands).
func writeFile(_ bytes: [UInt8], to path: String) throws {
    struct WriteError: Error { var path: String }
    // Unlink, not O_TRUNC: ext4 flushes a truncated-and-rewritten file on close (auto_da_alloc).
    unlink(path)
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard fd >= 0 else { throw WriteError(path: path) }
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count else { throw WriteError(path: path) }
}

/// The bytes of a safetensors file written by hand: the u64 length of `header` (or `length`
/// when given), the header bytes, then `dataSize` bytes counting 0, 1, 2, ….
func rawFile(_ header: String, dataSize: Int = 0, length: UInt64? = nil) -> [UInt8] {
    rawFile(bytes: Array(header.utf8), dataSize: dataSize, length: length)
}

func rawFile(bytes header: [UInt8], dataSize: Int = 0, length: UInt64? = nil) -> [UInt8] {
    var out = withUnsafeBytes(of: (length ?? UInt64(header.count)).littleEndian) { Array($0) }
    out += header
    out += (0..<dataSize).map { UInt8(truncatingIfNeeded: $0) }
    return out
}

/// The enum case name of an error ("byteCountMismatch"), for asserting on the case.
func caseName(_ error: any Error) -> String {
    Mirror(reflecting: error).children.first?.label ?? String(describing: error)
}

/// Fixtures committed under Tests/Fixtures/safetensors (no resource bundle: found from this file).
let fixtureDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/safetensors").path

/// Deterministic generator for test data and fuzzing (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomBytes(_ count: Int, _ rng: inout SplitMix64) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}
