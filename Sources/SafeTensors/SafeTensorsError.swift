#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

/// Everything that can go wrong reading, looking up or writing safetensors. Each case names the
/// file and, where there is one, the tensor; `description` adds a hint where one helps.
public enum SafeTensorsError: Error, CustomStringConvertible, Sendable {
    // Opening.
    /// A system call failed (`operation` is its name: "open", "fstat", "mmap", …).
    case cannotOpen(path: String, operation: String, errno: Int32)
    case notARegularFile(path: String)
    /// Fewer than the 8 bytes of the header length.
    case fileTooSmall(path: String, size: Int)
    /// The header length is past the end of the file or above `SafeTensorsFile.maxHeaderLength`.
    case headerLengthOutOfRange(path: String, length: UInt64, fileSize: Int, looksLikeLFSPointer: Bool)

    // Header syntax. Byte offsets count from the start of the JSON (file offset 8).
    case headerNotUTF8(path: String, byteOffset: Int)
    case malformedJSON(path: String, byteOffset: Int, reason: String)
    /// A key appears twice in one JSON object (rejected at any depth, never "last one wins").
    case duplicateKey(path: String, key: String)
    case headerNotObject(path: String, found: String)

    // Tensor entries.
    /// The entry for `tensor` is not a JSON object.
    case malformedEntry(path: String, tensor: String, found: String)
    case missingField(path: String, tensor: String, field: String)
    /// A field has the wrong JSON type or an impossible value (negative, fractional, wrong arity).
    case invalidField(path: String, tensor: String, field: String, reason: String)
    /// An integer above 2^53: beyond what JSON readers agree on, and beyond any real file.
    case integerOutOfRange(path: String, tensor: String, field: String, value: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    /// product(shape) × dtype.size does not fit in an Int.
    case shapeOverflow(path: String, tensor: String, shape: [Int], dtype: DType)
    case offsetsReversed(path: String, tensor: String, begin: Int, end: Int)
    case offsetsPastEnd(path: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case byteCountMismatch(path: String, tensor: String, begin: Int, end: Int, shape: [Int], dtype: DType)
    case overlappingTensors(path: String, tensor: String, range: Range<Int>, other: String, otherRange: Range<Int>)
    /// `__metadata__` is not an object whose values are all strings.
    case invalidMetadata(path: String, reason: String)

    // Lookup.
    case tensorNotFound(path: String, tensor: String, suggestion: String?)

    // Sharded folders. `index` is the path of model.safetensors.index.json.
    case noModelFile(directory: String, candidates: [String])
    case invalidIndex(index: String, reason: String)
    case shardPathEscapes(index: String, tensor: String, shard: String)
    case shardMissing(index: String, tensor: String, shard: String)
    case tensorMissingFromShard(index: String, tensor: String, shard: String)
    case tensorInTwoShards(tensor: String, shard: String, otherShard: String)

    // Writing.
    case invalidTensor(tensor: String, reason: String)
    case duplicateTensor(tensor: String)
    case writeFailed(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .cannotOpen(path, operation, code):
            let hint = code == ENOENT ? " (hint: check the path; relative paths start at the working directory)" : ""
            return "\(path): \(operation) failed: \(errnoText(code))\(hint)"
        case let .notARegularFile(path):
            return "\(path): not a regular file"
        case let .fileTooSmall(path, size):
            return "\(path): \(size) bytes is too small for a safetensors file, which starts with an 8-byte header length (hint: truncated download?)"
        case let .headerLengthOutOfRange(path, length, fileSize, lfs):
            let hint = lfs
                ? "this is a Git LFS pointer, not the file: run `git lfs pull`"
                : "not a safetensors file, or a truncated one"
            return "\(path): header length \(length) does not fit: the file has \(fileSize) bytes and headers are capped at \(SafeTensorsFile.maxHeaderLength) (hint: \(hint))"
        case let .headerNotUTF8(path, offset):
            return "\(path): header is not valid UTF-8 at header byte \(offset)"
        case let .malformedJSON(path, offset, reason):
            return "\(path): header is not valid JSON at header byte \(offset): \(reason)"
        case let .duplicateKey(path, key):
            return "\(path): header has the key '\(key)' twice in one object"
        case let .headerNotObject(path, found):
            return "\(path): header must be a JSON object of tensors, found \(found)"
        case let .malformedEntry(path, tensor, found):
            return "\(path): tensor '\(tensor)': entry must be an object with dtype, shape and data_offsets, found \(found)"
        case let .missingField(path, tensor, field):
            return "\(path): tensor '\(tensor)': missing '\(field)'"
        case let .invalidField(path, tensor, field, reason):
            return "\(path): tensor '\(tensor)': '\(field)' \(reason)"
        case let .integerOutOfRange(path, tensor, field, value):
            return "\(path): tensor '\(tensor)': '\(field)' value \(value) exceeds 2^53"
        case let .unknownDType(path, tensor, dtype):
            let known = DType.allCases.map(\.rawValue).joined(separator: ", ")
            return "\(path): tensor '\(tensor)': unknown dtype '\(dtype)' (hint: Graft reads \(known))"
        case let .shapeOverflow(path, tensor, shape, dtype):
            return "\(path): tensor '\(tensor)': shape \(shape) × \(dtype.rawValue) overflows the byte count"
        case let .offsetsReversed(path, tensor, begin, end):
            return "\(path): tensor '\(tensor)': data_offsets [\(begin), \(end)] end before they begin"
        case let .offsetsPastEnd(path, tensor, begin, end, dataSize):
            return "\(path): tensor '\(tensor)': data_offsets [\(begin), \(end)] run past the \(dataSize)-byte data region (hint: truncated download or copy?)"
        case let .byteCountMismatch(path, tensor, begin, end, shape, dtype):
            let needed = checkedByteCount(shape: shape, dtype: dtype).map(String.init) ?? "more than Int.max"
            return "\(path): tensor '\(tensor)': data_offsets [\(begin), \(end)] but shape \(shape) × \(dtype.rawValue) needs \(needed) bytes"
        case let .overlappingTensors(path, tensor, range, other, otherRange):
            return "\(path): tensor '\(tensor)' data_offsets [\(range.lowerBound), \(range.upperBound)] overlap tensor '\(other)' [\(otherRange.lowerBound), \(otherRange.upperBound)]"
        case let .invalidMetadata(path, reason):
            return "\(path): __metadata__ \(reason) (hint: it must map strings to strings)"
        case let .tensorNotFound(path, tensor, suggestion):
            let hint = suggestion.map { " (hint: did you mean '\($0)'?)" } ?? ""
            return "\(path): no tensor '\(tensor)'\(hint)"
        case let .noModelFile(directory, candidates):
            let hint = candidates.isEmpty
                ? "is this a model folder?"
                : "found \(candidates.joined(separator: ", "))"
            return "\(directory): neither model.safetensors nor model.safetensors.index.json (hint: \(hint))"
        case let .invalidIndex(index, reason):
            return "\(index): \(reason)"
        case let .shardPathEscapes(index, tensor, shard):
            return "\(index): tensor '\(tensor)' maps to shard '\(shard)', which is not a plain file name inside the folder"
        case let .shardMissing(index, tensor, shard):
            return "\(index): tensor '\(tensor)' maps to shard '\(shard)', which does not exist (hint: incomplete download?)"
        case let .tensorMissingFromShard(index, tensor, shard):
            return "\(index): tensor '\(tensor)' maps to shard '\(shard)', which does not contain it"
        case let .tensorInTwoShards(tensor, shard, otherShard):
            return "tensor '\(tensor)' is in both \(shard) and \(otherShard)"
        case let .invalidTensor(tensor, reason):
            return "tensor '\(tensor)': \(reason)"
        case let .duplicateTensor(tensor):
            return "tensor '\(tensor)' added twice"
        case let .writeFailed(path, operation, code):
            return "\(path): \(operation) failed: \(errnoText(code))"
        }
    }
}

func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return "\(String(cString: text)) (errno \(code))"
}
