import Foundation
import Testing
@testable import Tokenizers

/// Malformed tokenizer.json files are refused with a typed error naming the field, never a crash.
@Suite struct ErrorTests {
    static let vocab = #"{"a": 0, "b": 1, "ab": 2}"#
    static func bpe(_ model: String = #""type": "BPE", "vocab": \#(vocab), "merges": ["a b"]"#,
                    extra: String = "") -> String {
        #"{"model": {\#(model)}\#(extra)}"#
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let json: String
        let expected: TokenizerError
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "not JSON", json: "this is not json",
             expected: .invalidJSON(file: "tokenizer.json", message: "invalid literal at byte 0")),
        Case(name: "garbage", json: "<html>",
             expected: .invalidJSON(file: "tokenizer.json", message: "unexpected character '<' at byte 0")),
        Case(name: "truncated", json: #"{"model": {"type": "BPE""#,
             expected: .invalidJSON(file: "tokenizer.json", message: "unterminated object at byte 24")),
        Case(name: "root not an object", json: "[1, 2]",
             expected: .wrongType(path: "(root)", expected: "an object")),
        Case(name: "missing model", json: #"{"normalizer": null}"#, expected: .missingField(path: "model")),
        Case(name: "unknown model type", json: #"{"model": {"type": "Unigram", "vocab": []}}"#,
             expected: .unsupportedType(path: "model", type: "Unigram")),
        Case(name: "missing vocab", json: #"{"model": {"type": "BPE", "merges": []}}"#,
             expected: .missingField(path: "model.vocab")),
        Case(name: "vocab id not a number", json: #"{"model": {"type": "BPE", "vocab": {"a": "zero"}}}"#,
             expected: .wrongType(path: "model.vocab.a", expected: "an integer")),
        Case(name: "merge with unknown token", json: bpe(#""type": "BPE", "vocab": \#(vocab), "merges": ["a c"]"#),
             expected: .mergeTokenNotInVocabulary(index: 0, token: "c")),
        Case(name: "merge result not in vocab", json: bpe(#""type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]"#),
             expected: .mergeTokenNotInVocabulary(index: 0, token: "ab")),
        Case(name: "merge line without space", json: bpe(#""type": "BPE", "vocab": \#(vocab), "merges": ["ab"]"#),
             expected: .invalidValue(path: "model.merges[0]", problem: "merge 'ab' is not two tokens separated by one space")),
        Case(name: "merge of wrong shape", json: bpe(#""type": "BPE", "vocab": \#(vocab), "merges": [["a"]]"#),
             expected: .wrongType(path: "model.merges[0]", expected: "\"a b\" or [\"a\", \"b\"]")),
        Case(name: "unknown pre-tokenizer", json: bpe(extra: #", "pre_tokenizer": {"type": "Bogus"}"#),
             expected: .unsupportedType(path: "pre_tokenizer", type: "Bogus")),
        Case(name: "unknown pre-tokenizer in a sequence",
             json: bpe(extra: #", "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "Nope"}]}"#),
             expected: .unsupportedType(path: "pre_tokenizer.pretokenizers[1]", type: "Nope")),
        Case(name: "pre-tokenizer without type", json: bpe(extra: #", "pre_tokenizer": {"add_prefix_space": true}"#),
             expected: .missingField(path: "pre_tokenizer.type")),
        Case(name: "unknown normalizer", json: bpe(extra: #", "normalizer": {"type": "Precompiled"}"#),
             expected: .unsupportedType(path: "normalizer", type: "Precompiled")),
        Case(name: "unknown decoder", json: bpe(extra: #", "decoder": {"type": "CTC"}"#),
             expected: .unsupportedType(path: "decoder", type: "CTC")),
        Case(name: "unknown post-processor", json: bpe(extra: #", "post_processor": {"type": "Magic"}"#),
             expected: .unsupportedType(path: "post_processor", type: "Magic")),
        Case(name: "split without pattern", json: bpe(extra: #", "pre_tokenizer": {"type": "Split", "behavior": "Isolated"}"#),
             expected: .missingField(path: "pre_tokenizer.pattern")),
        Case(name: "split with unknown behavior",
             json: bpe(extra: #", "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}"#),
             expected: .invalidValue(path: "pre_tokenizer.behavior", problem: "unknown behavior 'Sideways'")),
        Case(name: "bad regex", json: bpe(extra: #", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}"#),
             expected: .invalidValue(path: "pre_tokenizer.pattern.Regex", problem: "")),
        Case(name: "added token without id", json: bpe(extra: #", "added_tokens": [{"content": "<s>"}]"#),
             expected: .missingField(path: "added_tokens[0].id")),
        Case(name: "template with undeclared special",
             json: bpe(extra: #", "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}], "special_tokens": {}}"#),
             expected: .invalidValue(path: "post_processor.single[0].SpecialToken", problem: "special token '<s>' missing from special_tokens")),
        Case(name: "deep nesting", json: String(repeating: "[", count: 10_000),
             expected: .invalidJSON(file: "tokenizer.json", message: "nesting deeper than 512 at byte 512")),
        Case(name: "model not an object", json: #"{"model": "BPE"}"#,
             expected: .wrongType(path: "model", expected: "an object")),
    ]

    @Test(arguments: cases)
    func malformedFileThrows(c: Case) {
        do {
            _ = try Tokenizer(json: Data(c.json.utf8))
            Issue.record("\(c.name): no error thrown")
        } catch {
            if case .invalidValue(let path, let problem) = c.expected, problem.isEmpty {
                // Only the path is stable for messages that come from the regex engine.
                guard case .invalidValue(let p, _) = error else { Issue.record("\(error)"); return }
                #expect(p == path)
            } else {
                #expect(error == c.expected)
            }
            #expect(!error.description.isEmpty)
        }
    }

    @Test func invalidUTF8InStringIsRejected() {
        var bytes = Array(#"{"model": {"type": "BPE", "vocab": {"#.utf8)
        bytes += [0x22, 0xFF, 0x22] + Array(#": 0}}}"#.utf8)
        #expect(throws: TokenizerError.self) { try Tokenizer(json: Data(bytes)) }
    }

    @Test func missingDirectoryNamesTheFile() {
        #expect(throws: TokenizerError.fileNotReadable(path: "/nonexistent/tokenizer.json")) {
            try Tokenizer(directory: "/nonexistent")
        }
    }

    @Test func malformedConfigNamesTheFile() throws {
        let json = Data(Self.bpe().utf8)
        #expect(throws: TokenizerError.invalidJSON(file: "tokenizer_config.json", message: "unexpected end of input at byte 0")) {
            try Tokenizer(json: json, config: Data())
        }
    }
}
