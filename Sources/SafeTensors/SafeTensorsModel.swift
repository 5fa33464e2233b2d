#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The weights of a Hugging Face model folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json` (which wins when both exist).
///
/// The index's `weight_map` (tensor name → shard file name) is the authority: every shard it
/// names must exist inside the folder, every tensor must be in the shard it maps to, and no
/// tensor may be in two shards. Tensors a shard holds but the map does not name are left out,
/// as Hugging Face loaders do. Shard names must be relative paths without `..` components;
/// symbolic links are followed (the Hugging Face cache links snapshots to blobs elsewhere).
public final class SafeTensorsModel: SafeTensorsSource, Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public let directory: String
    /// The open files, sorted by path: one, or one per shard.
    public let files: [SafeTensorsFile]
    /// Tensor name → its info; `byteOffset` is within the file that holds it (`file(containing:)`).
    public let tensors: [String: TensorInfo]
    public let names: [String]
    /// The single file's `__metadata__`; for shards, the index's `metadata` (numbers written as
    /// decimal text, e.g. total_size) over the shards' own, earlier shard files winning.
    public let metadata: [String: String]
    private let fileIndex: [String: Int]

    public init(directory: String) throws {
        self.directory = directory
        let indexPath = join(directory, Self.indexFileName)
        if fileExists(indexPath) {
            let index = try ShardIndex(path: indexPath)
            // The first tensor (by name) that maps to each shard, for messages.
            var firstTensor: [String: String] = [:]
            for (name, shard) in index.weightMap.sorted(by: { $0.key < $1.key }) where firstTensor[shard] == nil {
                firstTensor[shard] = name
            }
            var shardFiles: [String: SafeTensorsFile] = [:]
            for (shard, tensor) in firstTensor.sorted(by: { $0.key < $1.key }) {
                guard isPlainRelativePath(shard) else {
                    throw SafeTensorsError.shardPathEscapes(index: indexPath, tensor: tensor, shard: shard)
                }
                let shardPath = join(directory, shard)
                guard fileExists(shardPath) else {
                    throw SafeTensorsError.shardMissing(index: indexPath, tensor: tensor, shard: shard)
                }
                shardFiles[shard] = try SafeTensorsFile(path: shardPath)
            }
            let shards = shardFiles.keys.sorted()
            // A tensor in two shard headers is ambiguous even if the map picks one.
            var holder: [String: String] = [:]
            for shard in shards {
                for name in shardFiles[shard]?.names ?? [] {
                    if let other = holder[name] {
                        throw SafeTensorsError.tensorInTwoShards(tensor: name, shard: join(directory, other),
                                                                 otherShard: join(directory, shard))
                    }
                    holder[name] = shard
                }
            }
            var tensors: [String: TensorInfo] = [:]
            var fileIndex: [String: Int] = [:]
            for (name, shard) in index.weightMap.sorted(by: { $0.key < $1.key }) {
                guard let file = shardFiles[shard], let info = file.tensors[name], let position = shards.firstIndex(of: shard) else {
                    throw SafeTensorsError.tensorMissingFromShard(index: indexPath, tensor: name, shard: shard)
                }
                tensors[name] = info
                fileIndex[name] = position
            }
            var metadata = index.metadata
            for shard in shards {
                for (key, value) in shardFiles[shard]?.metadata ?? [:] where metadata[key] == nil {
                    metadata[key] = value
                }
            }
            self.files = shards.compactMap { shardFiles[$0] }
            self.tensors = tensors
            self.names = tensors.keys.sorted()
            self.fileIndex = fileIndex
            self.metadata = metadata
        } else {
            let singlePath = join(directory, Self.singleFileName)
            guard fileExists(singlePath) else {
                throw SafeTensorsError.noModelFile(directory: directory, candidates: safetensorsFiles(in: directory))
            }
            let file = try SafeTensorsFile(path: singlePath)
            self.files = [file]
            self.tensors = file.tensors
            self.names = file.names
            self.fileIndex = file.tensors.mapValues { _ in 0 }
            self.metadata = file.metadata
        }
    }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw SafeTensorsError.tensorNotFound(path: directory, tensor: name,
                                                  suggestion: closestName(to: name, in: names))
        }
        return info
    }

    /// The file that holds `name`.
    public func file(containing name: String) throws -> SafeTensorsFile {
        guard let position = fileIndex[name] else {
            throw SafeTensorsError.tensorNotFound(path: directory, tensor: name,
                                                  suggestion: closestName(to: name, in: names))
        }
        return files[position]
    }

    /// The tensor's bytes inside its shard's mapping; valid while this model lives. Unaligned
    /// in general: use `loadUnaligned`.
    public func data(_ name: String) throws -> UnsafeRawBufferPointer {
        let file = try file(containing: name)
        return file.data(for: try info(name))
    }

    /// Asks the kernel to start reading every file in.
    public func adviseWillNeed() {
        for file in files { file.adviseWillNeed() }
    }
}

/// `model.safetensors.index.json`: `{"metadata": {...}, "weight_map": {tensor: shard}}`.
private struct ShardIndex {
    var weightMap: [String: String]
    var metadata: [String: String]

    init(path: String) throws {
        let bytes = try readWholeFile(path, limit: SafeTensorsFile.maxHeaderLength)
        let root: JSONValue
        do {
            root = try bytes.withUnsafeBytes { try JSONParser.parse($0) }
        } catch let error as JSONError {
            let reason = switch error.kind {
            case .notUTF8: "not valid UTF-8 at byte \(error.offset)"
            case let .syntax(message): "not valid JSON at byte \(error.offset): \(message)"
            case let .duplicateKey(key): "has the key '\(key)' twice in one object"
            }
            throw SafeTensorsError.invalidIndex(index: path, reason: reason)
        }
        guard case let .object(members) = root else {
            throw SafeTensorsError.invalidIndex(index: path, reason: "must be a JSON object, found \(root.kindDescription)")
        }
        guard let mapValue = members.first(where: { $0.key == "weight_map" })?.value else {
            throw SafeTensorsError.invalidIndex(index: path, reason: "has no 'weight_map'")
        }
        guard case let .object(entries) = mapValue else {
            throw SafeTensorsError.invalidIndex(index: path, reason: "'weight_map' must be an object, found \(mapValue.kindDescription)")
        }
        weightMap = [:]
        for entry in entries {
            let (tensor, value) = (entry.key, entry.value)
            guard case let .string(shard) = value else {
                throw SafeTensorsError.invalidIndex(
                    index: path, reason: "'weight_map' entry '\(tensor)' must be a shard file name, found \(value.kindDescription)")
            }
            weightMap[tensor] = shard
        }
        metadata = [:]
        if case let .object(fields)? = members.first(where: { $0.key == "metadata" })?.value {
            for field in fields {
                let (key, value) = (field.key, field.value)
                switch value {
                case let .string(text): metadata[key] = text
                case let .number(number): metadata[key] = number.text
                case let .bool(flag): metadata[key] = String(flag)
                default: continue  // Nested values have no string form; nothing reads them.
                }
            }
        }
    }
}

/// A non-empty relative path whose components are neither empty, "." nor "..".
private func isPlainRelativePath(_ path: String) -> Bool {
    guard !path.isEmpty, !path.hasPrefix("/"), !path.utf8.contains(0) else { return false }
    return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy {
        !$0.isEmpty && $0 != "." && $0 != ".."
    }
}

private func join(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

private func fileExists(_ path: String) -> Bool {
    var status = stat()
    return stat(path, &status) == 0
}

/// Names ending in .safetensors in `directory`, sorted, for the "no model file" hint.
private func safetensorsFiles(in directory: String) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name.hasSuffix(".safetensors") { names.append(name) }
    }
    return names.sorted()
}

/// The whole of a small file, refusing anything over `limit` bytes.
func readWholeFile(_ path: String, limit: Int) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SafeTensorsError.cannotOpen(path: path, operation: "open", errno: errno) }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw SafeTensorsError.cannotOpen(path: path, operation: "read", errno: errno)
        }
        if count == 0 { return result }
        result.append(contentsOf: chunk[0..<count])
        guard result.count <= limit else {
            throw SafeTensorsError.invalidIndex(index: path, reason: "is larger than \(limit) bytes")
        }
    }
}
