import Foundation
import SafeTensors
import Testing

/// Opening maps the file and parses the header only: a 1 GiB file whose data pages were never
/// written (sparse, made with ftruncate) opens without reading them. No timing assertion: the
/// point is that nothing is copied or read at load.
@Suite struct SparseFileTests {
    @Test func oneGigabyteSparseFileOpens() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let dataSize = 1 << 30
        var header = Array(#"{"model.embed_tokens.weight":{"dtype":"BF16","shape":[32768,16384],"data_offsets":[0,1073741824]}}"#.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        let path = try dir.write(rawFile(bytes: header), to: "big.safetensors")
        let fd = open(path, O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(8 + header.count + dataSize)) == 0)

        let file = try SafeTensorsFile(path: path)
        #expect(file.fileSize == 8 + header.count + dataSize)
        let info = try file.info("model.embed_tokens.weight")
        #expect(info.dtype == .bf16)
        #expect(info.shape == [32768, 16384])
        #expect(info.elementCount == 1 << 29)
        #expect(info.byteOffset == 8 + header.count)
        #expect(info.byteCount == dataSize)
        let data = try file.data("model.embed_tokens.weight")
        #expect(data.count == dataSize)
        // Touch two pages only: the holes read as zeros.
        #expect(data.loadUnaligned(fromByteOffset: 0, as: UInt16.self) == 0)
        #expect(data.loadUnaligned(fromByteOffset: dataSize - 2, as: UInt16.self) == 0)
        file.adviseWillNeed()  // advice only; must not fail or fault
    }
}
