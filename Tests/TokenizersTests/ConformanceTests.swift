import Foundation
import Testing
@testable import Tokenizers

/// Exact agreement with the Hugging Face `tokenizers` package over the whole fixture corpus.
@Suite struct ConformanceTests {
    @Test(arguments: Fixtures.names)
    func encodeMatchesReference(name: String) throws {
        let tok = try TokenizerCache.load(name)
        let expected = try Fixtures.expected(name)
        let corpus = Fixtures.corpus
        #expect(corpus.count >= 2000)
        #expect(expected.encodings.count == (name.hasPrefix("variant-") ? (corpus.count + 3) / 4 : corpus.count))
        var compared = 0, failed = 0, specialCompared = 0
        for e in expected.encodings {
            let text = corpus[e.index]
            let ids = tok.encode(text)
            compared += 1
            if ids != e.ids {
                failed += 1
                if failed <= 5 {
                    Issue.record("\(name): encode(\"\(text.escaped)\")\n  swift:  \(ids)\n  python: \(e.ids)")
                }
            }
            if let sp = e.withSpecial {
                specialCompared += 1
                let got = tok.encode(text, addSpecialTokens: true)
                if got != sp {
                    failed += 1
                    Issue.record("\(name): encode(\"\(text.escaped)\", addSpecialTokens: true)\n  swift:  \(got)\n  python: \(sp)")
                }
            }
        }
        print("\(name): \(compared) strings encoded (+\(specialCompared) with special tokens), \(failed) mismatches")
        #expect(failed == 0)
    }

    @Test(arguments: Fixtures.names)
    func decodeMatchesReference(name: String) throws {
        let tok = try TokenizerCache.load(name)
        let expected = try Fixtures.expected(name)
        var compared = 0, failed = 0
        for e in expected.encodings {
            compared += 1
            let text = tok.decode(e.ids)
            if !text.scalarsEqual(e.decoded) {
                failed += 1
                if failed <= 5 { Issue.record("\(name): decode(\(e.ids))\n  swift:  \"\(text.escaped)\"\n  python: \"\(e.decoded.escaped)\"") }
            }
        }
        for d in expected.decodes {
            compared += 2
            let text = tok.decode(d.ids)
            let skipped = tok.decode(d.ids, skipSpecialTokens: true)
            if !text.scalarsEqual(d.decoded) || !skipped.scalarsEqual(d.skipped) {
                failed += 1
                if failed <= 10 {
                    Issue.record("\(name): decode(\(d.ids))\n  swift:  \"\(text.escaped)\" / skip \"\(skipped.escaped)\"\n  python: \"\(d.decoded.escaped)\" / skip \"\(d.skipped.escaped)\"")
                }
            }
        }
        print("\(name): \(compared) decodes compared, \(failed) mismatches")
        #expect(failed == 0)
    }

    @Test(arguments: Fixtures.names)
    func vocabularySize(name: String) throws {
        let tok = try TokenizerCache.load(name)
        let expected = try Fixtures.expected(name)
        #expect(tok.vocabSize == expected.meta["vocab_size"]?.int)
    }

    @Test func fixturesArePresent() {
        #expect(Fixtures.names.contains("bytelevel-small"))
        #expect(Fixtures.names.contains("llama2-sp"))
        #expect(Fixtures.corpus.count >= 2000)
    }
}
