#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

/// Builds a safetensors file. `write(to:)` writes a temporary file beside the target, fsyncs it
/// and renames it over the target, so readers (and a crash) see the old file or the new one,
/// never half of one; a mapping of the old file stays valid.
///
/// Layout is the one the reference `safetensors` package writes, so its readers accept our files:
/// the JSON header has sorted keys and is padded with spaces to a multiple of 8 bytes; tensor
/// data is packed with no gaps, largest dtype first then by name, so every tensor starts at a
/// multiple of its dtype size (the data region starts at a multiple of 8).
public struct SafeTensorsWriter {
    public var metadata: [String: String]
    private var entries: [Entry] = []
    private var added: Set<String> = []

    private struct Entry {
        var name: String
        var dtype: DType
        var shape: [Int]
        var byteCount: Int
        var source: Source
    }

    private enum Source {
        case bytes([UInt8])
        /// Called once at write time with a zeroed buffer of exactly byteCount bytes.
        case fill((UnsafeMutableRawBufferPointer) throws -> Void)
    }

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    public var tensorCount: Int { entries.count }

    /// Adds a tensor whose bytes are `bytes` (copied), little-endian, row-major.
    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) throws {
        let byteCount = try check(name, dtype: dtype, shape: shape)
        guard bytes.count == byteCount else { throw mismatch(name, dtype, shape, bytes.count, byteCount) }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, byteCount: byteCount, source: .bytes(bytes)))
        added.insert(name)
    }

    /// Adds a tensor whose bytes are copied from `bytes` now.
    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        try add(name, dtype: dtype, shape: shape, bytes: Array(bytes))
    }

    /// Adds a tensor of `values`, whose element type must be `dtype.size` bytes wide
    /// (`[Float]` for F32, `[UInt16]` bit patterns for BF16/F16, `[Int32]` for I32, …).
    public mutating func add<Element: BitwiseCopyable>(_ name: String, dtype: DType, shape: [Int],
                                                       values: [Element]) throws {
        guard MemoryLayout<Element>.size == dtype.size else {
            throw SafeTensorsError.invalidTensor(
                tensor: name, reason: "\(Element.self) is \(MemoryLayout<Element>.size) bytes but \(dtype.rawValue) is \(dtype.size)")
        }
        try add(name, dtype: dtype, shape: shape, bytes: values.withUnsafeBytes { Array($0) })
    }

    /// Adds a tensor whose bytes `fill` writes at write time into a zeroed buffer of exactly
    /// product(shape) × dtype.size bytes: large tensors are produced one at a time, not held.
    public mutating func add(_ name: String, dtype: DType, shape: [Int],
                             fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        let byteCount = try check(name, dtype: dtype, shape: shape)
        entries.append(Entry(name: name, dtype: dtype, shape: shape, byteCount: byteCount, source: .fill(fill)))
        added.insert(name)
    }

    private func check(_ name: String, dtype: DType, shape: [Int]) throws -> Int {
        guard !name.isEmpty, name != Header.metadataKey else {
            throw SafeTensorsError.invalidTensor(tensor: name, reason: "reserved or empty name")
        }
        guard !added.contains(name) else { throw SafeTensorsError.duplicateTensor(tensor: name) }
        guard shape.allSatisfy({ $0 >= 0 && $0 <= Int(Header.maxInteger) }) else {
            throw SafeTensorsError.invalidTensor(tensor: name, reason: "shape \(shape) has a negative or huge dimension")
        }
        guard let byteCount = checkedByteCount(shape: shape, dtype: dtype) else {
            throw SafeTensorsError.invalidTensor(tensor: name, reason: "shape \(shape) × \(dtype.rawValue) overflows")
        }
        return byteCount
    }

    private func mismatch(_ name: String, _ dtype: DType, _ shape: [Int], _ got: Int, _ needed: Int) -> SafeTensorsError {
        .invalidTensor(tensor: name, reason: "\(got) bytes but shape \(shape) × \(dtype.rawValue) needs \(needed)")
    }

    /// Entries in data order: those of a whole number of 64-byte lines first, then the largest
    /// dtype first (keeps every tensor naturally aligned), then name. With the data starting on
    /// a line (headerBytes pads to it), every tensor of whole lines — every weight matrix of the
    /// models served — starts on a 64-byte line: a vector load of a row split over two lines
    /// made SmolLM2's batch-1 matmuls ~10% slower (tools/bench_matmul on the weights 8 bytes off
    /// a line, Zen 4, 2026-11-25).
    private var dataOrder: [Entry] {
        entries.sorted { a, b in
            let wa = a.byteCount % 64 == 0, wb = b.byteCount % 64 == 0
            if wa != wb { return wa }
            return a.dtype.size != b.dtype.size ? a.dtype.size > b.dtype.size : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }

    /// The 8-byte length followed by the padded JSON header.
    func headerBytes() -> [UInt8] {
        var offsets: [String: (Int, Int)] = [:]
        var position = 0
        for entry in dataOrder {
            offsets[entry.name] = (position, position + entry.byteCount)
            position += entry.byteCount
        }
        var json: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func key(_ text: String) {
            if !first { json.append(UInt8(ascii: ",")) }
            first = false
            appendJSONString(text, to: &json)
            json.append(UInt8(ascii: ":"))
        }
        if !metadata.isEmpty {
            key(Header.metadataKey)
            json.append(UInt8(ascii: "{"))
            for (index, (name, value)) in metadata.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }).enumerated() {
                if index > 0 { json.append(UInt8(ascii: ",")) }
                appendJSONString(name, to: &json)
                json.append(UInt8(ascii: ":"))
                appendJSONString(value, to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        for entry in entries.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
            key(entry.name)
            let (begin, end) = offsets[entry.name] ?? (0, 0)
            let shape = entry.shape.map(String.init).joined(separator: ",")
            json.append(contentsOf: Array(#"{"dtype":"\#(entry.dtype.rawValue)","shape":[\#(shape)],"data_offsets":[\#(begin),\#(end)]}"#.utf8))
        }
        json.append(UInt8(ascii: "}"))
        // Spaces after the JSON (the format allows them) so that the data starts on a 64-byte
        // line (8 bytes of length + the header), which the format's 8-byte rule also meets.
        while (8 + json.count) % 64 != 0 { json.append(UInt8(ascii: " ")) }
        var result = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        result.append(contentsOf: json)
        return result
    }

    /// Writes the file: a temporary beside `path`, fsync, rename over `path`, fsync the folder.
    public func write(to path: String) throws {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]).isEmpty ? "/" : String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = (directory == "/" ? "" : directory) + "/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(0o644))
        guard fd >= 0 else { throw SafeTensorsError.writeFailed(path: temporary, operation: "open", errno: errno) }
        var closed = false
        do {
            try writeAll(fd, headerBytes(), path: temporary)
            for entry in dataOrder {
                switch entry.source {
                case let .bytes(bytes):
                    try writeAll(fd, bytes, path: temporary)
                case let .fill(fill):
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: entry.byteCount, alignment: 64)
                    defer { buffer.deallocate() }
                    if entry.byteCount > 0, let start = buffer.baseAddress { memset(start, 0, entry.byteCount) }
                    try fill(buffer)
                    try writeAll(fd, UnsafeRawBufferPointer(buffer), path: temporary)
                }
            }
            guard fsync(fd) == 0 else { throw SafeTensorsError.writeFailed(path: temporary, operation: "fsync", errno: errno) }
            closed = true
            guard close(fd) == 0 else { throw SafeTensorsError.writeFailed(path: temporary, operation: "close", errno: errno) }
            guard rename(temporary, path) == 0 else {
                throw SafeTensorsError.writeFailed(path: path, operation: "rename", errno: errno)
            }
        } catch {
            if !closed { close(fd) }
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable. Best effort: some filesystems refuse fsync on folders.
        let folder = open(directory, O_RDONLY | O_CLOEXEC)
        if folder >= 0 {
            _ = fsync(folder)
            close(folder)
        }
    }
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
    try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
}

private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
    guard var next = bytes.baseAddress else { return }
    var remaining = bytes.count
    while remaining > 0 {
        // Linux writes at most 0x7ffff000 bytes per call.
        let written = write(fd, next, min(remaining, 1 << 30))
        if written < 0 {
            if errno == EINTR { continue }
            throw SafeTensorsError.writeFailed(path: path, operation: "write", errno: errno)
        }
        next += written
        remaining -= written
    }
}
