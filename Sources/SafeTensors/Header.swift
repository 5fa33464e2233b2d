import TensorCore

/// A safetensors header checked field by field against the data region it describes.
///
/// Layout (https://github.com/huggingface/safetensors#format): 8-byte little-endian u64 N, N
/// bytes of JSON, then the data region. The JSON maps tensor names to
/// `{"dtype": "BF16", "shape": [4, 8], "data_offsets": [begin, end]}` with offsets relative to
/// the data region, plus an optional `"__metadata__": {string: string}`.
struct Header {
    var tensors: [String: TensorInfo]
    var metadata: [String: String]

    static let metadataKey = "__metadata__"

    /// Largest integer accepted in shapes and offsets: JSON readers disagree beyond 2^53 (most
    /// go through Double), and no file is that large.
    static let maxInteger: UInt64 = 1 << 53

    /// Parses and validates `json`, whose data region starts at absolute file offset
    /// `dataStart` and holds `dataSize` bytes. The first problem found, in header order, is thrown.
    static func parse(_ json: UnsafeRawBufferPointer, dataStart: Int, dataSize: Int,
                      path: String) throws(SafeTensorsError) -> Header {
        let root: JSONValue
        do {
            root = try JSONParser.parse(json)
        } catch {
            switch error.kind {
            case .notUTF8: throw .headerNotUTF8(path: path, byteOffset: error.offset)
            case let .syntax(reason): throw .malformedJSON(path: path, byteOffset: error.offset, reason: reason)
            case let .duplicateKey(key): throw .duplicateKey(path: path, key: key)
            }
        }
        guard case let .object(members) = root else {
            throw .headerNotObject(path: path, found: root.kindDescription)
        }
        var header = Header(tensors: [:], metadata: [:])
        header.tensors.reserveCapacity(members.count)
        for member in members {
            let (name, value) = (member.key, member.value)
            if name == metadataKey {
                header.metadata = try parseMetadata(value, path: path)
                continue
            }
            let info = try parseEntry(name: name, value, dataStart: dataStart, dataSize: dataSize, path: path)
            header.tensors[name] = info
        }
        try checkOverlaps(header.tensors.values, dataStart: dataStart, path: path)
        return header
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws(SafeTensorsError) -> [String: String] {
        switch value {
        case .null:
            return [:]  // Treated as absent, as the reference reader's Option does.
        case let .object(members):
            var metadata: [String: String] = [:]
            for member in members {
                let (key, entry) = (member.key, member.value)
                guard case let .string(text) = entry else {
                    throw .invalidMetadata(path: path, reason: "value for '\(key)' is \(entry.kindDescription), not a string")
                }
                metadata[key] = text
            }
            return metadata
        default:
            throw .invalidMetadata(path: path, reason: "is \(value.kindDescription), not an object")
        }
    }

    private static func parseEntry(name: String, _ value: JSONValue, dataStart: Int, dataSize: Int,
                                   path: String) throws(SafeTensorsError) -> TensorInfo {
        guard case let .object(fields) = value else {
            throw .malformedEntry(path: path, tensor: name, found: value.kindDescription)
        }
        func field(_ key: String) throws(SafeTensorsError) -> JSONValue {
            guard let found = fields.first(where: { $0.key == key }) else {
                throw .missingField(path: path, tensor: name, field: key)
            }
            return found.value
        }
        func integers(_ key: String, _ value: JSONValue) throws(SafeTensorsError) -> [Int] {
            guard case let .array(elements) = value else {
                throw .invalidField(path: path, tensor: name, field: key,
                                    reason: "must be an array of integers, found \(value.kindDescription)")
            }
            var result: [Int] = []
            result.reserveCapacity(elements.count)
            for element in elements {
                guard case let .number(number) = element, number.isInteger else {
                    throw .invalidField(path: path, tensor: name, field: key,
                                        reason: "must hold integers, found \(element.kindDescription)")
                }
                guard !number.isNegative || number.magnitude == 0 else {
                    throw .invalidField(path: path, tensor: name, field: key,
                                        reason: "must not be negative, found \(number.text)")
                }
                guard let magnitude = number.magnitude, magnitude <= maxInteger else {
                    throw .integerOutOfRange(path: path, tensor: name, field: key, value: number.text)
                }
                result.append(Int(magnitude))
            }
            return result
        }

        let dtypeValue = try field("dtype")
        guard case let .string(dtypeName) = dtypeValue else {
            throw .invalidField(path: path, tensor: name, field: "dtype",
                                reason: "must be a string, found \(dtypeValue.kindDescription)")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw .unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        let shape = try integers("shape", try field("shape"))
        let offsets = try integers("data_offsets", try field("data_offsets"))
        guard offsets.count == 2 else {
            throw .invalidField(path: path, tensor: name, field: "data_offsets",
                                reason: "must be [begin, end], found \(offsets.count) numbers")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else { throw .offsetsReversed(path: path, tensor: name, begin: begin, end: end) }
        guard end <= dataSize else {
            throw .offsetsPastEnd(path: path, tensor: name, begin: begin, end: end, dataSize: dataSize)
        }
        guard let byteCount = checkedByteCount(shape: shape, dtype: dtype) else {
            throw .shapeOverflow(path: path, tensor: name, shape: shape, dtype: dtype)
        }
        guard end - begin == byteCount else {
            throw .byteCountMismatch(path: path, tensor: name, begin: begin, end: end, shape: shape, dtype: dtype)
        }
        // dataStart + end ≤ file size, so this cannot overflow.
        return TensorInfo(name: name, dtype: dtype, shape: shape, byteOffset: dataStart + begin, byteCount: byteCount)
    }

    /// Empty tensors occupy no bytes and overlap nothing. Gaps between tensors are allowed.
    private static func checkOverlaps(_ tensors: some Collection<TensorInfo>, dataStart: Int,
                                      path: String) throws(SafeTensorsError) {
        let sorted = tensors.filter { $0.byteCount > 0 }.sorted {
            ($0.byteOffset, $0.byteCount, $0.name) < ($1.byteOffset, $1.byteCount, $1.name)
        }
        var furthest: TensorInfo?
        for info in sorted {
            if let previous = furthest, info.byteOffset < previous.byteOffset + previous.byteCount {
                func relative(_ t: TensorInfo) -> Range<Int> {
                    (t.byteOffset - dataStart)..<(t.byteOffset - dataStart + t.byteCount)
                }
                throw .overlappingTensors(path: path, tensor: info.name, range: relative(info),
                                          other: previous.name, otherRange: relative(previous))
            }
            if info.byteOffset + info.byteCount > (furthest.map { $0.byteOffset + $0.byteCount } ?? 0) {
                furthest = info
            }
        }
    }
}
