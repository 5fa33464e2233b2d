import Foundation
import TensorCore
import Testing

/// SHA-256 against FIPS 180-4's vectors, whole and fed in pieces of every size.
@Suite struct SHA256Tests {
    @Test func sha256KnownVectors() {
        #expect(SHA256Digest.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256Digest.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256Digest.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256Digest.hex(String(repeating: "a", count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func streamingEqualsWhole() {
        let text = String(repeating: "abcdefghij", count: 50)
        for piece in [1, 3, 63, 64, 65, 200] {
            var s = SHA256Digest()
            var rest = Substring(text)
            while !rest.isEmpty {
                s.update(String(rest.prefix(piece)))
                rest = rest.dropFirst(piece)
            }
            #expect(s.hexDigest() == SHA256Digest.hex(text), "pieces of \(piece)")
            #expect(s.hexDigest() == s.hexDigest(), "reading the digest changes nothing")
        }
    }
}
