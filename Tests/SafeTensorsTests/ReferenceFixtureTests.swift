import Foundation
import SafeTensors
import TensorCore
import Testing

/// Files made by the reference `safetensors` package (see Tests/Fixtures/safetensors/README.md),
/// checked against the exact header entries and bit patterns the script recorded.
@Suite struct ReferenceFixtureTests {
    @Test(arguments: ["reference", "unaligned"])
    func matchesRecordedValues(fixture: String) throws {
        let file = try SafeTensorsFile(path: fixtureDirectory + "/\(fixture).safetensors")
        let expectedData = try Data(contentsOf: URL(fileURLWithPath: fixtureDirectory + "/\(fixture).json"))
        let expected = try #require(try JSONSerialization.jsonObject(with: expectedData) as? [String: Any])
        let tensors = try #require(expected["tensors"] as? [String: [String: Any]])

        #expect(file.fileSize == expected["file_size"] as? Int)
        #expect(file.dataOffset == 8 + (expected["header_length"] as? Int ?? -1))
        #expect(file.metadata == expected["metadata"] as? [String: String])
        #expect(file.names == tensors.keys.sorted())

        for (name, entry) in tensors {
            let info = try file.info(name)
            #expect(info.dtype.rawValue == entry["dtype"] as? String, "\(name)")
            #expect(info.shape == entry["shape"] as? [Int], "\(name)")
            #expect(info.byteOffset == entry["byte_offset"] as? Int, "\(name)")
            let offsets = try #require(entry["data_offsets"] as? [Int])
            #expect(info.byteCount == offsets[1] - offsets[0])

            let data = try file.data(name)
            let bits = try #require(entry["bits"] as? [String]).map { UInt64($0, radix: 16) }
            #expect(readBits(data, dtype: info.dtype) == bits, "\(name) bit patterns")
            // Hex floats ("0x1.99999a0000000p-4", "inf") and decimal integers: exact text.
            let values = try #require(entry["exact"] as? [String])
            #expect(values.count == info.elementCount)
            for (index, text) in values.enumerated() {
                let actual = readValue(data, dtype: info.dtype, index: index)
                let want = try #require(Double(text), "\(text)")
                #expect(actual == want || (actual.isNaN && want.isNaN), "\(name)[\(index)] \(text)")
                #expect(actual.sign == want.sign, "\(name)[\(index)] \(text)")
            }
        }
    }

    @Test func unalignedOffsetsAreRead() throws {
        let file = try SafeTensorsFile(path: fixtureDirectory + "/unaligned.safetensors")
        #expect(file.dataOffset % 2 == 1)
        let f32 = try file.info("b_f32")
        #expect(f32.byteOffset % 4 != 0, "the fixture is meant to be unaligned")
        let data = try file.data("b_f32")
        #expect(data.loadUnaligned(fromByteOffset: 4, as: Float.self) == -2.0)
        let i64 = try file.data("d_i64")
        #expect(i64.loadUnaligned(fromByteOffset: 8, as: Int64.self) == 1 << 40)
    }
}

/// Every element's bit pattern, zero-extended (loads are unaligned: offsets may be odd).
private func readBits(_ data: UnsafeRawBufferPointer, dtype: DType) -> [UInt64?] {
    stride(from: 0, to: data.count, by: dtype.size).map { offset in
        switch dtype.size {
        case 1: UInt64(data.loadUnaligned(fromByteOffset: offset, as: UInt8.self))
        case 2: UInt64(UInt16(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        case 4: UInt64(UInt32(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        default: UInt64(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
    }
}

/// Element `index` widened exactly to Double.
private func readValue(_ data: UnsafeRawBufferPointer, dtype: DType, index: Int) -> Double {
    let offset = index * dtype.size
    return switch dtype {
    case .f64: data.loadUnaligned(fromByteOffset: offset, as: Double.self)
    case .f32: Double(data.loadUnaligned(fromByteOffset: offset, as: Float.self))
    case .f16: Double(f16ToFloat(data.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    case .bf16: Double(bf16ToFloat(data.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    case .i64: Double(data.loadUnaligned(fromByteOffset: offset, as: Int64.self))
    case .i32: Double(data.loadUnaligned(fromByteOffset: offset, as: Int32.self))
    case .i16: Double(data.loadUnaligned(fromByteOffset: offset, as: Int16.self))
    case .i8: Double(data.loadUnaligned(fromByteOffset: offset, as: Int8.self))
    case .u8, .bool: Double(data.loadUnaligned(fromByteOffset: offset, as: UInt8.self))
    }
}
