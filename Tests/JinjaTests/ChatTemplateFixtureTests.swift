// Real and hand-written chat templates over many conversations, against transformers'
// apply_chat_template / render_jinja_template output (Tests/Fixtures/chat_templates/*.json).

import Foundation
import Jinja
import Testing
import Tokenizers

struct ChatCase: Sendable, CustomTestStringConvertible {
    let file: String
    let name: String
    let template: String
    let specialTokens: [String: String]
    let messages: [Value]
    let addGenerationPrompt: Bool
    let continueFinalMessage: Bool
    let tools: [Value]?
    let extra: [String: Value]
    let expectation: Expectation

    var testDescription: String { "\(file): \(name)" }

    /// Parsed once per test run (the fixtures are a few MB of JSON).
    private static let loaded = Result { try load() }

    static func all() throws -> [ChatCase] { try loaded.get() }

    private static func load() throws -> [ChatCase] {
        var cases: [ChatCase] = []
        for file in try Fixtures.chatTemplateFiles() {
            let fixture = try Fixtures.load(file)
            guard let template = fixture["template"]?.stringValue, let records = fixture["cases"]?.arrayValue else {
                throw FixtureError.malformed(file)
            }
            var special: [String: String] = [:]
            for (k, v) in fixture["special_tokens"]?.objectValue?.pairs ?? [] {
                if let s = v.stringValue { special[k] = s }
            }
            for record in records {
                guard let r = record.objectValue else { throw FixtureError.malformed(file) }
                var extra: [String: Value] = [:]
                for (k, v) in r["extra"]?.objectValue?.pairs ?? [] { extra[k] = v }
                cases.append(ChatCase(
                    file: file, name: r["name"]?.stringValue ?? "?", template: template, specialTokens: special,
                    messages: r["messages"]?.arrayValue ?? [], addGenerationPrompt: r["add_generation_prompt"]?.boolValue ?? false,
                    continueFinalMessage: r["continue_final_message"]?.boolValue ?? false,
                    tools: r["tools"]?.arrayValue, extra: extra, expectation: try Expectation(r)))
            }
        }
        return cases
    }
}

@Suite struct ChatTemplateFixtureTests {
    @Test(arguments: try ChatCase.all())
    func rendersLikeTransformers(_ c: ChatCase) throws {
        let template = try ChatTemplate(source: c.template, specialTokens: c.specialTokens)
        check(c.expectation) {
            try template.render(conversation: c.messages, addGenerationPrompt: c.addGenerationPrompt,
                                tools: c.tools, continueFinalMessage: c.continueFinalMessage, extra: c.extra)
        }
    }

    @Test func fixturesCoverTheRealTemplates() throws {
        let files = try Fixtures.chatTemplateFiles()
        for name in ["smollm2", "qwen2.5", "llama2", "llama3"] { #expect(files.contains(name)) }
        #expect(try ChatCase.all().count >= 300)
    }

    /// The plain-text entry point gives what the Value one gives.
    @Test func chatMessageAPI() throws {
        let fixture = try Fixtures.load("smollm2")
        let template = try ChatTemplate(source: fixture["template"]!.stringValue!, specialTokens: ["eos_token": "<|im_end|>"])
        let text = try template.render(messages: [ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true)
        #expect(text == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }
}

/// The same fixtures through `Tokenizer.applyChatTemplate`, with the special tokens the
/// Tokenizers target reads from tokenizer_config.json.
@Suite struct TokenizerChatTemplateTests {
    static let tokenizerDirectory = Fixtures.directory.deletingLastPathComponent().appendingPathComponent("tokenizers")

    @Test(arguments: ["smollm2", "qwen2.5"])
    func tokenizerRendersLikeTransformers(_ name: String) throws {
        let tokenizer = try Tokenizer(directory: Self.tokenizerDirectory.appendingPathComponent(name).path)
        let template = try tokenizer.makeChatTemplate()
        let cases = try ChatCase.all().filter { $0.file == name }
        #expect(cases.count >= 40)
        #expect(template.source == cases.first?.template)
        #expect(tokenizer.chatTemplateSpecialTokens == cases.first?.specialTokens)
        for c in cases {
            check(c.expectation) {
                try tokenizer.applyChatTemplate(conversation: c.messages, addGenerationPrompt: c.addGenerationPrompt, tools: c.tools,
                                                continueFinalMessage: c.continueFinalMessage)
            }
        }
        _ = template
    }

    @Test func tokenizerWithoutTemplateThrows() throws {
        let tokenizer = try Tokenizer(directory: Self.tokenizerDirectory.appendingPathComponent("llama2-sp").path)
        guard tokenizer.chatTemplate == nil else { return }
        let error = #expect(throws: TemplateError.self) { try tokenizer.applyChatTemplate(messages: []) }
        #expect(error?.kind == .missingTemplate)
    }
}
