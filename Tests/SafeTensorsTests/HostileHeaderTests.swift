import Foundation
import SafeTensors
import Testing

/// A malformed file and what opening it must throw.
struct HostileCase: Sendable, CustomStringConvertible {
    var description: String
    var bytes: [UInt8]
    /// The `SafeTensorsError` case name.
    var error: String
    /// Text the message must contain (it names the problem).
    var message: String
}

private let entry = #"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#

private let hostileCases: [HostileCase] = [
    HostileCase(description: "empty file", bytes: [], error: "fileTooSmall", message: "0 bytes is too small"),
    HostileCase(description: "shorter than 8 bytes", bytes: [1, 0, 0], error: "fileTooSmall", message: "3 bytes is too small"),
    HostileCase(description: "header length past EOF", bytes: rawFile("{}", length: 100),
                error: "headerLengthOutOfRange", message: "header length 100 does not fit: the file has 10 bytes"),
    HostileCase(description: "header length 2^63", bytes: rawFile("{}", length: 1 << 63),
                error: "headerLengthOutOfRange", message: "header length 9223372036854775808"),
    HostileCase(description: "header length u64 max", bytes: rawFile("{}", length: .max),
                error: "headerLengthOutOfRange", message: "18446744073709551615"),
    HostileCase(description: "Git LFS pointer",
                bytes: Array("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n".utf8),
                error: "headerLengthOutOfRange", message: "git lfs pull"),
    HostileCase(description: "not JSON", bytes: rawFile("hello, world"), error: "malformedJSON", message: "unexpected character 'h'"),
    HostileCase(description: "empty header", bytes: rawFile(""), error: "malformedJSON", message: "unexpected end of input"),
    HostileCase(description: "truncated JSON", bytes: rawFile(#"{"a":{"dtype":"F32""#), error: "malformedJSON", message: "expected ',' or '}'"),
    HostileCase(description: "trailing garbage", bytes: rawFile("{} x"), error: "malformedJSON", message: "after the JSON value"),
    HostileCase(description: "trailing comma", bytes: rawFile(#"{"a":1,}"#), error: "malformedJSON", message: "expected a string key"),
    HostileCase(description: "NUL padding", bytes: rawFile("{}\0\0"), error: "malformedJSON", message: "after the JSON value"),
    HostileCase(description: "JSON array", bytes: rawFile("[]"), error: "headerNotObject", message: "found an array"),
    HostileCase(description: "JSON string", bytes: rawFile(#""model""#), error: "headerNotObject", message: "the string \"model\""),
    HostileCase(description: "invalid UTF-8", bytes: rawFile(bytes: Array(#"{"a"#.utf8) + [0xFF] + Array(#"":1}"#.utf8)),
                error: "headerNotUTF8", message: "not valid UTF-8 at header byte 3"),
    HostileCase(description: "overlong UTF-8", bytes: rawFile(bytes: Array(#"{""#.utf8) + [0xC0, 0xAF] + Array(#"":1}"#.utf8)),
                error: "headerNotUTF8", message: "header byte 2"),
    HostileCase(description: "UTF-8 surrogate", bytes: rawFile(bytes: Array(#"{""#.utf8) + [0xED, 0xA0, 0x80] + Array(#"":1}"#.utf8)),
                error: "headerNotUTF8", message: "header byte 2"),
    HostileCase(description: "lone surrogate escape", bytes: rawFile(#"{"\ud800":1}"#), error: "malformedJSON", message: "lone surrogate"),
    HostileCase(description: "control character in a name", bytes: rawFile("{\"a\u{1}\":1}"), error: "malformedJSON", message: "control character"),
    HostileCase(description: "deep nesting", bytes: rawFile(#"{"__metadata__":"# + String(repeating: "[", count: 100_000)),
                error: "malformedJSON", message: "nesting deeper than 32"),
    HostileCase(description: "duplicate tensor", bytes: rawFile(#"{"a":\#(entry),"a":\#(entry)}"#, dataSize: 8),
                error: "duplicateKey", message: "'a' twice"),
    HostileCase(description: "duplicate field", bytes: rawFile(#"{"a":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "duplicateKey", message: "'dtype' twice"),
    HostileCase(description: "entry not an object", bytes: rawFile(#"{"a":5}"#), error: "malformedEntry", message: "tensor 'a'"),
    HostileCase(description: "missing dtype", bytes: rawFile(#"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "missingField", message: "tensor 'w': missing 'dtype'"),
    HostileCase(description: "missing shape", bytes: rawFile(#"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#, dataSize: 8),
                error: "missingField", message: "tensor 'w': missing 'shape'"),
    HostileCase(description: "missing data_offsets", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[2]}}"#, dataSize: 8),
                error: "missingField", message: "tensor 'w': missing 'data_offsets'"),
    HostileCase(description: "dtype not a string", bytes: rawFile(#"{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "invalidField", message: "'dtype' must be a string, found the number 4"),
    HostileCase(description: "unknown dtype", bytes: rawFile(#"{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, dataSize: 2),
                error: "unknownDType", message: "unknown dtype 'F8_E4M3' (hint: Graft reads F64, F32"),
    HostileCase(description: "lowercase dtype", bytes: rawFile(#"{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "unknownDType", message: "'f32'"),
    HostileCase(description: "shape not an array", bytes: rawFile(#"{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "invalidField", message: "'shape' must be an array of integers"),
    HostileCase(description: "negative shape", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "invalidField", message: "'shape' must not be negative, found -2"),
    HostileCase(description: "float shape", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "invalidField", message: "'shape' must hold integers, found the number 2.0"),
    HostileCase(description: "exponent shape", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "invalidField", message: "found the number 2e0"),
    HostileCase(description: "string shape entry", bytes: rawFile(#"{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, dataSize: 8),
                error: "invalidField", message: "must hold integers"),
    HostileCase(description: "shape product overflow",
                bytes: rawFile(#"{"w":{"dtype":"F32","shape":[1073741824,1073741824,1073741824],"data_offsets":[0,0]}}"#),
                error: "shapeOverflow", message: "shape [1073741824, 1073741824, 1073741824] × F32 overflows"),
    HostileCase(description: "offsets end < begin", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, dataSize: 8),
                error: "offsetsReversed", message: "data_offsets [8, 0] end before they begin"),
    HostileCase(description: "offsets past data end", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, dataSize: 7),
                error: "offsetsPastEnd", message: "data_offsets [0, 8] run past the 7-byte data region"),
    HostileCase(description: "one offset", bytes: rawFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}}"#, dataSize: 8),
                error: "invalidField", message: "must be [begin, end], found 1 numbers"),
    HostileCase(description: "byte count ≠ shape × size",
                bytes: rawFile(#"{"model.layers.0.mlp.up_proj.weight":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,100]}}"#, dataSize: 100),
                error: "byteCountMismatch",
                message: "tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 100] but shape [4, 8] × BF16 needs 64 bytes"),
    HostileCase(description: "overlapping ranges",
                bytes: rawFile(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, dataSize: 12),
                error: "overlappingTensors", message: "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]"),
    HostileCase(description: "same range twice",
                bytes: rawFile(#"{"a":\#(entry),"b":\#(entry)}"#, dataSize: 8),
                error: "overlappingTensors", message: "overlap"),
    HostileCase(description: "offset above 2^53",
                bytes: rawFile(#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[9007199254740993,9007199254740994]}}"#),
                error: "integerOutOfRange", message: "'data_offsets' value 9007199254740993 exceeds 2^53"),
    HostileCase(description: "offset above u64",
                bytes: rawFile(#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#),
                error: "integerOutOfRange", message: "99999999999999999999999"),
    HostileCase(description: "shape entry above 2^53",
                bytes: rawFile(#"{"w":{"dtype":"U8","shape":[18446744073709551616,0],"data_offsets":[0,0]}}"#),
                error: "integerOutOfRange", message: "'shape' value 18446744073709551616"),
    HostileCase(description: "metadata value not a string", bytes: rawFile(#"{"__metadata__":{"format":"pt","n":1}}"#),
                error: "invalidMetadata", message: "value for 'n' is the number 1, not a string"),
    HostileCase(description: "metadata not an object", bytes: rawFile(#"{"__metadata__":["pt"]}"#),
                error: "invalidMetadata", message: "is an array, not an object"),
]

@Suite struct HostileHeaderTests {
    @Test(arguments: hostileCases)
    func rejected(_ hostile: HostileCase) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write(hostile.bytes, to: "hostile.safetensors")
        let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: path) }
        guard let error else { return }
        #expect(caseName(error) == hostile.error, "\(error)")
        #expect(error.description.contains(hostile.message), "\(error)")
        #expect(error.description.hasPrefix(path), "messages name the file")
    }

    @Test func notAFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let missing = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: dir.file("nope")) }
        #expect(missing.map(caseName) == "cannotOpen")
        #expect(missing?.description.contains("No such file") == true)
        let folder = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: dir.path) }
        #expect(folder.map(caseName) == "notARegularFile")
    }

    /// What the format allows must be accepted: padding, gaps, empty tensors sharing an offset,
    /// escapes, no tensors at all, null metadata.
    @Test func lenientWhereTheFormatIs() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let header = #"  {"__metadata__":null, "g\u00e9\n":{"dtype":"U8","shape":[2],"data_offsets":[5,7]},"#
            + #""e1":{"dtype":"F32","shape":[0,4],"data_offsets":[5,5]},"e2":{"dtype":"F64","shape":[3,0],"data_offsets":[5,5]},"#
            + #""s":{"dtype":"I16","shape":[],"data_offsets":[0,2], "extra": [1, {"x": true}]}}        "#
        let path = try dir.write(rawFile(header, dataSize: 9), to: "ok.safetensors")
        let file = try SafeTensorsFile(path: path)
        #expect(file.names == ["e1", "e2", "gé\n", "s"])
        #expect(file.metadata.isEmpty)
        #expect(Array(try file.data("gé\n")) == [5, 6])
        #expect(try file.info("s").elementCount == 1)
        #expect(try file.data("e1").isEmpty)
        #expect(file.fileSize == 8 + header.utf8.count + 9)

        let nothing = try SafeTensorsFile(path: try dir.write(rawFile("{}"), to: "empty.safetensors"))
        #expect(nothing.tensors.isEmpty && nothing.names.isEmpty)
    }

    @Test func unknownNameSuggestsACloseOne() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var writer = SafeTensorsWriter()
        for name in ["model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight"] {
            try writer.add(name, dtype: .u8, shape: [1], bytes: [0])
        }
        let path = dir.file("model.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)

        let typo = #expect(throws: SafeTensorsError.self) { _ = try file.info("model.layers.0.mlp.up_proj.weigth") }
        #expect(typo.map(caseName) == "tensorNotFound")
        #expect(typo?.description == "\(path): no tensor 'model.layers.0.mlp.up_proj.weigth' (hint: did you mean 'model.layers.0.mlp.up_proj.weight'?)")
        let prefix = #expect(throws: SafeTensorsError.self) { _ = try file.data("norm.weight") }
        #expect(prefix?.description.contains("did you mean 'model.norm.weight'?") == true)
        let unrelated = #expect(throws: SafeTensorsError.self) { _ = try file.info("lm_head.bias") }
        #expect(unrelated?.description == "\(path): no tensor 'lm_head.bias'")
    }
}
