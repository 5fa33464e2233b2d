#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

/// A safetensors file mapped read-only. Opening reads the header pages only: tensor data is
/// paged in by the kernel when first touched, so a 13 GB model opens in microseconds.
///
/// Every header field is validated against the file size before use (see `Header`). Tensor
/// bytes returned by `data(_:)` are views into the mapping, valid while this object lives, and
/// are not necessarily aligned to their dtype: read them with `loadUnaligned`.
///
/// The mapping is `MAP_PRIVATE`: if another process truncates the file while it is mapped,
/// touching the lost pages raises SIGBUS. Files are replaced by rename (as `SafeTensorsWriter`
/// does), which leaves this mapping on the old inode and is safe.
public final class SafeTensorsFile: SafeTensorsSource, @unchecked Sendable {
    /// Headers above this are rejected before anything is read (the reference reader's cap).
    public static let maxHeaderLength = 100_000_000

    public let path: String
    public let fileSize: Int
    /// Absolute offset of the data region (8 + header length).
    public let dataOffset: Int
    public let tensors: [String: TensorInfo]
    /// Tensor names sorted in ascending order (not in header order, which writers vary).
    public let names: [String]
    public let metadata: [String: String]

    // Immutable after init, so sharing across threads is safe (hence @unchecked Sendable).
    private let base: UnsafeRawPointer

    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SafeTensorsError.cannotOpen(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw SafeTensorsError.cannotOpen(path: path, operation: "fstat", errno: errno)
        }
        guard status.st_mode & S_IFMT == S_IFREG else { throw SafeTensorsError.notARegularFile(path: path) }
        let size = Int(status.st_size)
        guard size >= 8 else { throw SafeTensorsError.fileTooSmall(path: path, size: size) }

        guard let mapped = Self.map(fd: fd, size: size) else {
            throw SafeTensorsError.cannotOpen(path: path, operation: "mmap", errno: errno)
        }
        let base = UnsafeRawPointer(mapped)
        do {
            let length = base.loadUnaligned(as: UInt64.self).littleEndian
            guard length <= UInt64(size - 8), length <= UInt64(Self.maxHeaderLength) else {
                let prefix = UnsafeRawBufferPointer(start: base, count: min(size, 8))
                throw SafeTensorsError.headerLengthOutOfRange(
                    path: path, length: length, fileSize: size,
                    looksLikeLFSPointer: prefix.elementsEqual("version ".utf8))
            }
            let headerLength = Int(length)
            let json = UnsafeRawBufferPointer(start: base + 8, count: headerLength)
            let header = try Header.parse(json, dataStart: 8 + headerLength,
                                          dataSize: size - 8 - headerLength, path: path)
            self.path = path
            self.fileSize = size
            self.dataOffset = 8 + headerLength
            self.tensors = header.tensors
            self.names = header.tensors.keys.sorted()
            self.metadata = header.metadata
            self.base = base
        } catch {
            munmap(mapped, size)
            throw error
        }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), fileSize)
    }

    /// Maps `size` bytes of `fd` read-only. On Linux the mapping starts on a huge-page boundary
    /// and asks for transparent huge pages (MADV_HUGEPAGE): where the kernel keeps the file in
    /// 2 MiB page-cache folios (ext4 and others since Linux 6.x, read in by faults on such a
    /// mapping), each 2 MiB is then mapped by one page-table entry, and a decode step, which
    /// streams every weight once, reads faster (SmolLM2-135M's batch-1 step 12.7-13.2 ms from
    /// 4 KiB folios against 10.9-11.5 ms from 2 MiB ones, Zen 4, 2026-11-25). Advice only: where
    /// the kernel gives none, this is a plain mapping. nil (errno set) if mmap fails.
    static func map(fd: Int32, size: Int) -> UnsafeMutableRawPointer? {
        #if os(Linux)
        let huge = SystemInfo.hugePageBytes
        if size >= huge, let reserved = mmap(nil, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
           reserved != MAP_FAILED {
            // Reserve size + 2 MiB, map the file over the first aligned address inside, and give
            // back the reservation's head and tail.
            let r = Int(bitPattern: reserved)
            let start = Int(bitPattern: SystemInfo.hugePageBoundary(atOrAfter: reserved))
            if let mapped = mmap(UnsafeMutableRawPointer(bitPattern: start), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0),
               mapped != MAP_FAILED {
                let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 1)
                let end = (start + size + page - 1) / page * page
                if start > r { munmap(reserved, start - r) }
                if r + size + huge > end { munmap(UnsafeMutableRawPointer(bitPattern: end), r + size + huge - end) }
                _ = madvise(mapped, size, MADV_HUGEPAGE)
                return mapped
            }
            munmap(reserved, size + huge)
        }
        #endif
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else { return nil }
        return mapped
    }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw SafeTensorsError.tensorNotFound(path: path, tensor: name,
                                                  suggestion: closestName(to: name, in: names))
        }
        return info
    }

    /// The tensor's bytes inside the mapping; valid while this file object lives. Not aligned
    /// in general: use `loadUnaligned(fromByteOffset:as:)`.
    public func data(_ name: String) throws -> UnsafeRawBufferPointer {
        data(for: try info(name))
    }

    /// Calls `body` with the tensor's bytes, keeping this file mapped until it returns: use it
    /// when the file object is a temporary (`try SafeTensorsFile(path: p).data(n)` would dangle).
    public func withData<Result>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> Result) throws -> Result {
        try withExtendedLifetime(self) { try body(try data(name)) }
    }

    /// The bytes of a tensor of this file (an `info` from this file's `tensors`).
    public func data(for info: TensorInfo) -> UnsafeRawBufferPointer {
        precondition(info.byteOffset >= dataOffset && info.byteOffset + info.byteCount <= fileSize,
                     "TensorInfo '\(info.name)' does not belong to \(path)")
        return UnsafeRawBufferPointer(start: base + info.byteOffset, count: info.byteCount)
    }

    /// The whole file as mapped, header included.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: fileSize)
    }

    /// Asks the kernel to start reading the whole file in (e.g. before the first forward pass).
    /// Advice only: failures are ignored.
    public func adviseWillNeed() {
        advise(offset: 0, count: fileSize, MADV_WILLNEED)
    }

    /// Asks the kernel to start reading one tensor in.
    public func adviseWillNeed(_ name: String) throws {
        let info = try info(name)
        advise(offset: info.byteOffset, count: info.byteCount, MADV_WILLNEED)
    }

    private func advise(offset: Int, count: Int, _ advice: Int32) {
        guard count > 0 else { return }
        // madvise wants a page-aligned start; the mapping itself starts on a page.
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = page > 0 ? offset / page * page : 0
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), offset + count - start, advice)
    }
}
