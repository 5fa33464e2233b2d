// Chat formatting as transformers' `apply_chat_template(..., tokenize=False)` does it: the
// template from tokenizer_config.json rendered by the Jinja interpreter with `messages`, `tools`,
// `documents`, `add_generation_prompt` and the tokenizer's special tokens (bos_token, eos_token,
// unk_token, pad_token) as variables; caller-supplied extras override the special tokens.

import Jinja

/// One chat turn with plain text content. Richer turns (tool calls, content parts) go through
/// `ChatTemplate.render(conversation:...)` as `Value` objects.
public struct ChatMessage: Sendable, Codable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public var value: Value { .object(OrderedObject([("role", .string(role)), ("content", .string(content))])) }
}

public struct ChatTemplate: Sendable {
    public let source: String
    /// Special-token variables the template sees, e.g. `["bos_token": "<s>", "eos_token": "</s>"]`.
    public var specialTokens: [String: String]
    private let template: Template

    /// Compiles `source`; throws `TemplateError` (kind `.syntax`, with line and column) if it does
    /// not parse.
    public init(source: String, specialTokens: [String: String] = [:]) throws {
        self.source = source
        self.specialTokens = specialTokens
        self.template = try Template(source)
    }

    /// Renders plain-text messages.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, tools: [Value]? = nil,
                       documents: [Value]? = nil, extra: [String: Value] = [:]) throws -> String {
        try render(conversation: messages.map(\.value), addGenerationPrompt: addGenerationPrompt,
                   tools: tools, documents: documents, extra: extra)
    }

    /// Renders messages given as objects (`role`, `content`, `tool_calls`, ...). As transformers
    /// does, an empty conversation is refused and keys whose value is `null` are dropped first:
    /// templates test `message.tool_calls is defined`, and an OpenAI client sends `"tool_calls": null`.
    public func render(conversation: [Value], addGenerationPrompt: Bool, tools: [Value]? = nil,
                       documents: [Value]? = nil, extra: [String: Value] = [:]) throws -> String {
        guard !conversation.isEmpty else {
            // apply_chat_template refuses this before rendering (a ValueError there).
            throw TemplateError(.type, "Cannot apply chat template to an empty conversation. Provide at least one message.")
        }
        let messages: [Value] = conversation.map { message in
            guard case .object(let object) = message else { return message }
            return .object(OrderedObject(object.pairs.filter { !$0.value.isNoneValue }.map { ($0.key, $0.value) }))
        }
        var context: [String: Value] = [:]
        for (name, token) in specialTokens { context[name] = .string(token) }
        for (name, value) in extra { context[name] = value }
        context["messages"] = .array(messages)
        context["tools"] = tools.map(Value.array) ?? Value.none
        context["documents"] = documents.map(Value.array) ?? Value.none
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try template.render(context)
    }
}

extension Tokenizer {
    /// The special-token variables transformers passes to templates (its `special_tokens_map`:
    /// bos, eos, unk and pad tokens that are set).
    public var chatTemplateSpecialTokens: [String: String] {
        var tokens: [String: String] = [:]
        tokens["bos_token"] = bosToken
        tokens["eos_token"] = eosToken
        tokens["unk_token"] = unkToken
        tokens["pad_token"] = padToken
        return tokens
    }

    /// Compiles this tokenizer's chat template. Compile once and keep it: rendering is cheap,
    /// parsing is not free.
    public func makeChatTemplate() throws -> ChatTemplate {
        guard let chatTemplate else {
            throw TemplateError(.missingTemplate,
                "this tokenizer has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)")
        }
        return try ChatTemplate(source: chatTemplate, specialTokens: chatTemplateSpecialTokens)
    }

    /// `apply_chat_template(messages, add_generation_prompt=..., tokenize=False)`.
    public func applyChatTemplate(messages: [ChatMessage], addGenerationPrompt: Bool = true, tools: [Value]? = nil,
                                  extra: [String: Value] = [:]) throws -> String {
        try makeChatTemplate().render(messages: messages, addGenerationPrompt: addGenerationPrompt, tools: tools, extra: extra)
    }

    /// The same for messages given as objects (tool calls, tool results, content parts).
    public func applyChatTemplate(conversation: [Value], addGenerationPrompt: Bool = true, tools: [Value]? = nil,
                                  extra: [String: Value] = [:]) throws -> String {
        try makeChatTemplate().render(conversation: conversation, addGenerationPrompt: addGenerationPrompt,
                                      tools: tools, extra: extra)
    }
}

extension Value {
    fileprivate var isNoneValue: Bool {
        if case .none = self { return true }
        return false
    }
}
