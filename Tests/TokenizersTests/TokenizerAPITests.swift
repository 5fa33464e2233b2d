import Foundation
import Testing
@testable import Tokenizers

@Suite struct TokenizerAPITests {
    @Test func specialTokensFromConfig() throws {
        let llama = try TokenizerCache.load("llama2-sp")
        #expect(llama.bosToken == "<s>")  // written as an AddedToken object in the config
        #expect(llama.eosToken == "</s>")
        #expect(llama.bosTokenID == 1)
        #expect(llama.eosTokenID == 2)
        #expect(llama.unkTokenID == 0)
        #expect(llama.padToken == nil)
        #expect(llama.encode("hi", addSpecialTokens: true).first == 1)
        #expect(llama.encode("hi").first != 1)
        #expect(llama.config["add_bos_token"]?.bool == true)

        let small = try TokenizerCache.load("bytelevel-small")
        #expect(small.bosToken == "<|im_start|>")
        #expect(small.padTokenID == small.tokenToID("<pad>"))
        #expect(small.chatTemplate?.hasPrefix("{% for m in messages %}") == true)
        #expect(small.isSpecial(try #require(small.eosTokenID)))
        #expect(small.specialTokenIDs.contains(0))
    }

    @Test func tokenAndIDRoundTrip() throws {
        let tok = try TokenizerCache.load("smollm2")
        for id in [0, 1, 2, 100, 1000, 20000, tok.vocabSize - 1] {
            let t = try #require(tok.idToToken(id))
            #expect(tok.tokenToID(t) == id)
        }
        #expect(tok.idToToken(tok.vocabSize + 10) == nil)
        #expect(tok.tokenToID("<|im_start|>") == 1)
        #expect(tok.tokenToID("no such token anywhere") == nil)
    }

    /// The vocabulary is keyed by bytes: a precomposed and a decomposed "é" are different keys.
    @Test func vocabularyIsNotKeyedByCanonicalEquivalence() throws {
        let json = #"{"model": {"type": "BPE", "vocab": {"\u00e9": 0, "e\u0301": 1, "e": 2, "\u0301": 3}, "merges": ["e \u0301"]}}"#
        let tok = try Tokenizer(json: Data(json.utf8))
        #expect(tok.vocabSize == 4)
        #expect(tok.tokenToID("\u{E9}") == 0)
        #expect(tok.tokenToID("e\u{301}") == 1)
        #expect(tok.encode("\u{E9}") == [0])
        #expect(tok.encode("e\u{301}") == [1])
    }

    @Test func chatTemplateFileTakesPrecedence() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("graft-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = URL(fileURLWithPath: Fixtures.directory("bytelevel-small"))
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        try "{{ messages }}".write(to: dir.appendingPathComponent("chat_template.jinja"), atomically: true, encoding: .utf8)
        let tok = try Tokenizer(directory: dir.path)
        #expect(tok.chatTemplate == "{{ messages }}")
    }

    @Test func namedChatTemplates() throws {
        let config = #"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#
        let tok = try Tokenizer(json: Data(ErrorTests.bpe().utf8), config: Data(config.utf8))
        #expect(tok.chatTemplate == "D")
    }

    /// One tokenizer shared by several threads (its word cache is the only shared state).
    @Test func concurrentEncodesAgree() async throws {
        let tok = try TokenizerCache.load("smollm2")
        let corpus = Array(Fixtures.corpus.prefix(300))
        let expected = corpus.map { tok.encode($0) }
        let results = await withTaskGroup(of: Bool.self) { group in
            for k in 0..<4 {
                group.addTask {
                    let order = k % 2 == 0 ? Array(corpus.indices) : corpus.indices.reversed()
                    return order.allSatisfy { tok.encode(corpus[$0]) == expected[$0] }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == [true, true, true, true])
    }

    @Test func emptyAndUnknown() throws {
        let tok = try TokenizerCache.load("qwen2.5")
        #expect(tok.encode("") == [])
        #expect(tok.decode([]) == "")
        #expect(tok.decode([-1, 10_000_000]) == "")
    }

    /// The Split behaviours besides Isolated, against outputs of tokenizers 0.23.3
    /// (`pre_tokenizers.Split("-", behavior).pre_tokenize_str("a-b--c-")`).
    @Test(arguments: [
        ("Removed", ["a", "b", "c"]),
        ("Isolated", ["a", "-", "b", "-", "-", "c", "-"]),
        ("MergedWithPrevious", ["a-", "b-", "-", "c-"]),
        ("MergedWithNext", ["a", "-b", "-", "-c", "-"]),
        ("Contiguous", ["a", "-", "b", "--", "c", "-"]),
    ])
    func splitBehaviors(behavior: String, expected: [String]) throws {
        let pre = try makePreTokenizer(JSONReader(JSONValue.parse(#"{"type": "Split", "pattern": {"String": "-"}, "behavior": "\#(behavior)", "invert": false}"#), path: "pre_tokenizer"))
        let pieces = pre.split(Piece(text: Array("a-b--c-".unicodeScalars), addedID: nil, atOrigin: true))
        #expect(pieces.map { $0.text.string } == expected)
    }
}

@Suite struct RegexFallbackTests {
    /// Patterns that are not GPT-2's or Qwen2's go to Swift `Regex`; escapes in both spellings.
    @Test(arguments: [#"[\u0300-\u036f]"#, "[\u{300}-\u{36f}]", #"\p{Mn}"#])
    func combiningMarks(pattern: String) throws {
        let json = JSONValue.object([("type", .string("Replace")), ("pattern", .object([("Regex", .string(pattern))])),
                                     ("content", .string(""))])
        let n = try makeNormalizer(JSONReader(json, path: "normalizer"))
        #expect(n.normalize(Array("e\u{301}a\u{300}".unicodeScalars)).string == "ea")
    }
}
