import Foundation
import Testing
@testable import Tokenizers

/// The hand-written regex matchers' character classes against Oniguruma's, as probed through
/// tokenizers 0.23.3 by tools/gen_tokenizer_fixtures.py (unicode_classes.json) over every scalar.
@Suite struct UnicodeClassTests {
    struct Classes {
        var letter = Set<UInt32>(), number = Set<UInt32>(), space = Set<UInt32>()
    }

    static func load() throws -> Classes {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("unicode_classes.json"))
        let json = try JSONValue.parse(data)
        func set(_ key: String) -> Set<UInt32> {
            var out = Set<UInt32>()
            for r in json[key]?.array ?? [] {
                guard let lo = r.array?[0].int, let hi = r.array?[1].int else { continue }
                for v in lo...hi { out.insert(UInt32(v)) }
            }
            return out
        }
        return Classes(letter: set("L"), number: set("N"), space: set("space"))
    }

    @Test func classesMatchOniguruma() throws {
        let c = try Self.load()
        #expect(c.letter.count > 100_000)
        var differences: [String] = []
        for v in UInt32(0)...0x10FFFF {
            guard let s = Unicode.Scalar(v) else { continue }
            let mine = (UnicodeClass.isLetter(s), UnicodeClass.isNumber(s), UnicodeClass.isWhitespace(s))
            let theirs = (c.letter.contains(v), c.number.contains(v), c.space.contains(v))
            if mine != theirs {
                differences.append(String(format: "U+%04X L:%d/%d N:%d/%d S:%d/%d", v,
                                          mine.0 ? 1 : 0, theirs.0 ? 1 : 0, mine.1 ? 1 : 0, theirs.1 ? 1 : 0,
                                          mine.2 ? 1 : 0, theirs.2 ? 1 : 0))
            }
        }
        // Swift's Unicode tables (17.0 in Swift 6.3) are newer than Oniguruma's in tokenizers
        // 0.23.3 (16.0): scalars assigned since are letters/numbers here, unassigned there. Whitespace and
        // everything both versions assign must agree.
        let unassignedThere = differences.filter { $0.contains("L:1/0") || $0.contains("N:1/0") }
        let real = differences.filter { !unassignedThere.contains($0) }
        print("unicode classes: \(differences.count) scalars differ (e.g. \(differences.prefix(2)), \(differences.suffix(2))), all letters/numbers unassigned in Oniguruma's tables: \(real.isEmpty)")
        #expect(real.isEmpty, "\(real.prefix(20))")
    }
}
