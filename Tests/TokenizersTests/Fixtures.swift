import Foundation
import Tokenizers

/// Tests/Fixtures/tokenizers, written by tools/gen_tokenizer_fixtures.py with the Hugging Face
/// `tokenizers` package (its version is in each file's first line).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("tokenizers")

    /// Every fixture folder with a tokenizer.json and its expected.jsonl.
    static let names: [String] = {
        let fm = FileManager.default
        let all = (try? fm.contentsOfDirectory(atPath: root.path)) ?? []
        return all.filter {
            fm.fileExists(atPath: root.appendingPathComponent("\($0)/tokenizer.json").path)
                && fm.fileExists(atPath: root.appendingPathComponent("\($0)/expected.jsonl").path)
        }.sorted()
    }()

    static func directory(_ name: String) -> String { root.appendingPathComponent(name).path }

    static func jsonLines(_ url: URL) throws -> [JSONValue] {
        let data = try Data(contentsOf: url)
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONValue.parse(Data($0)) }
    }

    /// The corpus strings, in order (the first line is metadata).
    static let corpus: [String] = {
        let lines = (try? jsonLines(root.appendingPathComponent("corpus.jsonl"))) ?? []
        return lines.compactMap { $0["text"]?.string }
    }()

    struct Expected {
        var meta: JSONValue
        /// One per corpus line (every 4th for the variant-* fixtures; `index` is the line):
        /// ids without special tokens, decode(ids), ids with special tokens (some lines).
        var encodings: [(index: Int, ids: [Int], decoded: String, withSpecial: [Int]?)] = []
        /// Random id sequences: decode with and without skipping special tokens.
        var decodes: [(ids: [Int], decoded: String, skipped: String)] = []
    }

    static func ints(_ v: JSONValue?) -> [Int]? { v?.array?.compactMap(\.int) }

    static func expected(_ name: String) throws -> Expected {
        let lines = try jsonLines(root.appendingPathComponent("\(name)/expected.jsonl"))
        var e = Expected(meta: lines.first?["meta"] ?? .null)
        for line in lines.dropFirst() {
            if let ids = ints(line["decode"]) {
                e.decodes.append((ids, line["dec"]?.string ?? "", line["skip"]?.string ?? ""))
            } else if let ids = ints(line["ids"]) {
                let index = line["i"]?.int ?? e.encodings.count
                e.encodings.append((index, ids, line["dec"]?.string ?? "", ints(line["sp"])))
            }
        }
        return e
    }
}

extension String {
    /// Scalar-exact comparison (`==` on String is canonical equivalence, too lenient here).
    func scalarsEqual(_ other: String) -> Bool { unicodeScalars.elementsEqual(other.unicodeScalars) }

    var escaped: String { unicodeScalars.map { $0.escaped(asASCII: true) }.joined() }
}

/// Tokenizers loaded once per test process (the Qwen2.5 vocabulary takes a while in debug builds).
enum TokenizerCache {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var loaded: [String: Tokenizer] = [:]

    static func load(_ name: String) throws -> Tokenizer {
        lock.lock(); defer { lock.unlock() }
        if let t = loaded[name] { return t }
        let t = try Tokenizer(directory: Fixtures.directory(name))
        loaded[name] = t
        return t
    }
}
