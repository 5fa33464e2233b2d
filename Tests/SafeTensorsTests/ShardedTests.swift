import Foundation
import SafeTensors
import Testing

/// Model folders: a single model.safetensors, or shards named by model.safetensors.index.json.
@Suite struct ShardedTests {
    /// Writes `shards` (file name → tensor names, each a U8 [2] holding its shard's number and
    /// the tensor's position) and, when `index` is given, the index JSON.
    private func makeFolder(_ dir: TemporaryDirectory, shards: [String: [String]], index: String?,
                            metadata: [String: String] = ["format": "pt"]) throws {
        for (number, (file, names)) in shards.sorted(by: { $0.key < $1.key }).enumerated() {
            var writer = SafeTensorsWriter(metadata: metadata)
            for (position, name) in names.enumerated() {
                try writer.add(name, dtype: .u8, shape: [2], bytes: [UInt8(number), UInt8(position)])
            }
            try writer.write(to: dir.file(file))
        }
        if let index { _ = try dir.write(Array(index.utf8), to: "model.safetensors.index.json") }
    }

    private let twoShards = [
        "model-00001-of-00002.safetensors": ["model.embed_tokens.weight", "model.layers.0.weight"],
        "model-00002-of-00002.safetensors": ["model.layers.1.weight", "lm_head.weight"],
    ]

    private let twoShardIndex = """
        {"metadata": {"total_size": 8, "note": "x"},
         "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                        "model.layers.0.weight": "model-00001-of-00002.safetensors",
                        "model.layers.1.weight": "model-00002-of-00002.safetensors",
                        "lm_head.weight": "model-00002-of-00002.safetensors"}}
        """

    @Test func shardsThroughTheIndex() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try makeFolder(dir, shards: twoShards, index: twoShardIndex)
        let model = try SafeTensorsModel(directory: dir.path)
        #expect(model.files.count == 2)
        #expect(model.names == ["lm_head.weight", "model.embed_tokens.weight", "model.layers.0.weight", "model.layers.1.weight"])
        #expect(Array(try model.data("model.embed_tokens.weight")) == [0, 0])
        #expect(Array(try model.data("model.layers.0.weight")) == [0, 1])
        #expect(Array(try model.data("model.layers.1.weight")) == [1, 0])
        #expect(Array(try model.data("lm_head.weight")) == [1, 1])
        #expect(try model.file(containing: "lm_head.weight").path == dir.file("model-00002-of-00002.safetensors"))
        #expect(try model.info("lm_head.weight").shape == [2])
        #expect(model.metadata == ["total_size": "8", "note": "x", "format": "pt"])
        let missing = #expect(throws: SafeTensorsError.self) { _ = try model.data("model.layers.2.weight") }
        #expect(missing?.description.contains("did you mean") == true)
    }

    @Test func singleFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try makeFolder(dir, shards: ["model.safetensors": ["a", "b"]], index: nil, metadata: ["format": "mlx"])
        let model = try SafeTensorsModel(directory: dir.path + "/")
        #expect(model.names == ["a", "b"])
        #expect(model.metadata == ["format": "mlx"])
        #expect(Array(try model.data("b")) == [0, 1])
    }

    @Test func indexWinsOverASingleFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var shards = twoShards
        shards["model.safetensors"] = ["stale"]
        try makeFolder(dir, shards: shards, index: twoShardIndex)
        let model = try SafeTensorsModel(directory: dir.path)
        #expect(model.tensors["stale"] == nil)
        #expect(model.tensors.count == 4)
    }

    /// Tensors a shard holds but the map does not name are left out, as HF loaders do.
    @Test func unmappedTensorsAreLeftOut() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try makeFolder(dir, shards: ["a.safetensors": ["x", "extra"]],
                       index: #"{"weight_map": {"x": "a.safetensors"}}"#)
        #expect(try SafeTensorsModel(directory: dir.path).names == ["x"])
    }

    struct BadFolder: Sendable, CustomStringConvertible {
        var description: String
        var shards: [String: [String]]
        var index: String?
        var error: String
        var message: String
    }

    static let badFolders: [BadFolder] = [
        BadFolder(description: "empty folder", shards: [:], index: nil, error: "noModelFile",
                  message: "neither model.safetensors nor model.safetensors.index.json (hint: is this a model folder?)"),
        BadFolder(description: "other safetensors only", shards: ["weights.safetensors": ["a"]], index: nil,
                  error: "noModelFile", message: "(hint: found weights.safetensors)"),
        BadFolder(description: "missing shard", shards: ["a.safetensors": ["x"]],
                  index: #"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#,
                  error: "shardMissing", message: "tensor 'y' maps to shard 'b.safetensors', which does not exist"),
        BadFolder(description: "tensor missing from its shard", shards: ["a.safetensors": ["x"], "b.safetensors": ["z"]],
                  index: #"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#,
                  error: "tensorMissingFromShard", message: "tensor 'y' maps to shard 'b.safetensors', which does not contain it"),
        BadFolder(description: "tensor mapped to the wrong shard", shards: ["a.safetensors": ["x"], "b.safetensors": ["y"]],
                  index: #"{"weight_map": {"x": "b.safetensors", "y": "b.safetensors"}}"#,
                  error: "tensorMissingFromShard", message: "tensor 'x' maps to shard 'b.safetensors'"),
        BadFolder(description: "tensor in two shards", shards: ["a.safetensors": ["x", "y"], "b.safetensors": ["y"]],
                  index: #"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#,
                  error: "tensorInTwoShards", message: "tensor 'y' is in both"),
        BadFolder(description: "path escaping the folder", shards: ["a.safetensors": ["x"]],
                  index: #"{"weight_map": {"x": "../a.safetensors"}}"#,
                  error: "shardPathEscapes", message: "shard '../a.safetensors', which is not a plain file name inside the folder"),
        BadFolder(description: "escape in the middle", shards: ["a.safetensors": ["x"]],
                  index: #"{"weight_map": {"x": "sub/../../a.safetensors"}}"#, error: "shardPathEscapes", message: "sub/../../"),
        BadFolder(description: "absolute path", shards: ["a.safetensors": ["x"]],
                  index: #"{"weight_map": {"x": "/etc/passwd"}}"#, error: "shardPathEscapes", message: "'/etc/passwd'"),
        BadFolder(description: "empty shard name", shards: ["a.safetensors": ["x"]],
                  index: #"{"weight_map": {"x": ""}}"#, error: "shardPathEscapes", message: "shard ''"),
        BadFolder(description: "index not JSON", shards: [:], index: "{weight_map", error: "invalidIndex", message: "not valid JSON"),
        BadFolder(description: "no weight_map", shards: [:], index: #"{"metadata": {}}"#, error: "invalidIndex", message: "has no 'weight_map'"),
        BadFolder(description: "weight_map an array", shards: [:], index: #"{"weight_map": []}"#,
                  error: "invalidIndex", message: "'weight_map' must be an object, found an array"),
        BadFolder(description: "shard not a string", shards: [:], index: #"{"weight_map": {"x": 3}}"#,
                  error: "invalidIndex", message: "entry 'x' must be a shard file name"),
        BadFolder(description: "duplicate tensor in the index", shards: ["a.safetensors": ["x"]],
                  index: #"{"weight_map": {"x": "a.safetensors", "x": "a.safetensors"}}"#,
                  error: "invalidIndex", message: "has the key 'x' twice"),
        BadFolder(description: "corrupt shard", shards: [:], index: #"{"weight_map": {"x": "bad.safetensors"}}"#,
                  error: "fileTooSmall", message: "bad.safetensors: 3 bytes is too small"),
    ]

    @Test(arguments: badFolders)
    func rejected(_ bad: BadFolder) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try makeFolder(dir, shards: bad.shards, index: bad.index)
        if bad.description == "corrupt shard" { _ = try dir.write([1, 2, 3], to: "bad.safetensors") }
        let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsModel(directory: dir.path) }
        guard let error else { return }
        #expect(caseName(error) == bad.error, "\(error)")
        #expect(error.description.contains(bad.message), "\(error)")
    }
}
