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
                       documents: [Value]? = nil, continueFinalMessage: Bool = false,
                       extra: [String: Value] = [:]) throws -> String {
        try render(conversation: messages.map(\.value), addGenerationPrompt: addGenerationPrompt,
                   tools: tools, documents: documents, continueFinalMessage: continueFinalMessage, extra: extra)
    }

    /// Renders messages given as objects (`role`, `content`, `tool_calls`, ...), as
    /// `apply_chat_template(tokenize=False)` does: an empty conversation is refused; keys whose
    /// value is `null` are dropped (templates test `message.tool_calls is defined`, and an OpenAI
    /// client sends `"tool_calls": null`); reasoning given as `reasoning` or `thinking` is also
    /// passed as `reasoning_content` (and as `thinking`). With `continueFinalMessage` the text
    /// ends inside the last message, so generation continues it (an assistant prefix).
    public func render(conversation: [Value], addGenerationPrompt: Bool, tools: [Value]? = nil,
                       documents: [Value]? = nil, continueFinalMessage: Bool = false,
                       extra: [String: Value] = [:]) throws -> String {
        guard !conversation.isEmpty else {
            // apply_chat_template refuses this before rendering (a ValueError there).
            throw TemplateError(.type, "Cannot apply chat template to an empty conversation. Provide at least one message.")
        }
        if continueFinalMessage && addGenerationPrompt {
            throw TemplateError(.type, "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when you want the model to continue the final message, and add_generation_prompt when you want to add a header that will prompt it to start a new assistant message instead.")
        }
        var messages: [Value] = conversation.map { message in
            guard case .object(let object) = message else { return message }
            return ChatTemplate.aliasReasoning(OrderedObject(object.pairs.filter { !$0.value.isNoneValue }.map { ($0.key, $0.value) }))
        }
        var finalText = ""
        if continueFinalMessage {
            (messages[messages.count - 1], finalText) = try markFinalMessage(messages[messages.count - 1])
        }
        var context: [String: Value] = [:]
        for (name, token) in specialTokens { context[name] = .string(token) }
        for (name, value) in extra { context[name] = value }
        context["messages"] = .array(messages)
        context["tools"] = tools.map(Value.array) ?? Value.none
        context["documents"] = documents.map(Value.array) ?? Value.none
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        let rendered = try template.render(context)
        return continueFinalMessage ? try cutAtFinalMessage(rendered, finalText: finalText) : rendered
    }

    /// transformers' `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`.
    static func aliasReasoning(_ message: OrderedObject) -> Value {
        guard let reasoning = ["reasoning_content", "thinking", "reasoning"].lazy.compactMap({ message[$0] }).first else {
            return .object(message)
        }
        var aliased = OrderedObject()
        aliased["thinking"] = reasoning
        for (key, value) in message.pairs { aliased[key] = value }
        aliased["reasoning_content"] = reasoning
        return .object(aliased)
    }

    private static let continueTag = "CONTINUE_FINAL_MESSAGE_TAG "

    /// Appends the tag to the final message's content (its last text block for content lists).
    private func markFinalMessage(_ message: Value) throws -> (Value, String) {
        guard case .object(var object) = message, let content = object["content"] else {
            throw TemplateError(.type, "continue_final_message is set but the final message has no \"content\" to continue!")
        }
        guard source.contains("content") else {
            throw TemplateError(.type, "continue_final_message is set to \"content\" but this is not an accepted field in the chat_template")
        }
        switch content {
        case .string(let text):
            object["content"] = .string(text + ChatTemplate.continueTag)
            return (.object(object), text)
        case .array(var blocks), .tuple(var blocks):
            for index in blocks.indices.reversed() {
                guard case .object(var block) = blocks[index], let textValue = block["text"] else { continue }
                guard case .string(let text) = textValue else {
                    throw TemplateError(.type, "continue_final_message: the final text block is not a string")
                }
                block["text"] = .string(text + ChatTemplate.continueTag)
                blocks[index] = .object(block)
                object["content"] = .array(blocks)
                return (.object(object), text)
            }
            throw TemplateError(.type, "continue_final_message is set but we could not find any text to continue in the final message!")
        default:
            throw TemplateError(.type, "continue_final_message: the final message's content is not text")
        }
    }

    /// Cuts the rendered chat where the tag landed, as transformers does (Python indices are code
    /// points, so this works on scalars).
    private func cutAtFinalMessage(_ rendered: String, finalText: String) throws -> String {
        let tag = Array(ChatTemplate.continueTag.unicodeScalars)
        let trimmedTag = Array(tag.dropLast())
        let text = Array(rendered.unicodeScalars)
        let final = Array(pyStripWhitespace(finalText).unicodeScalars)
        func lastIndex(of needle: [Unicode.Scalar]) -> Int? {
            guard needle.count <= text.count else { return nil }
            return stride(from: text.count - needle.count, through: 0, by: -1).first { Array(text[$0..<($0 + needle.count)]) == needle }
        }
        guard let tagLocation = lastIndex(of: trimmedTag), final.isEmpty || lastIndex(of: final) != nil else {
            throw TemplateError(.type, "continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure they are compatible.")
        }
        var kept = String.UnicodeScalarView(text[..<tagLocation])
        if !(tagLocation + tag.count <= text.count && Array(text[tagLocation..<(tagLocation + tag.count)]) == tag) {
            // The template trimmed the space after the tag: trim the kept text too.
            while let last = kept.last, isWhitespace(last) { kept.removeLast() }
        }
        return String(kept)
    }
}

/// Python's `str.isspace` for one scalar.
private func isWhitespace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0: return true
    default: return s.value > 0x7F && s.properties.isWhitespace
    }
}

/// Python's `str.strip()`.
private func pyStripWhitespace(_ s: String) -> String {
    var scalars = Array(s.unicodeScalars)[...]
    while let f = scalars.first, isWhitespace(f) { scalars.removeFirst() }
    while let l = scalars.last, isWhitespace(l) { scalars.removeLast() }
    return String(String.UnicodeScalarView(scalars))
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
                                  continueFinalMessage: Bool = false, extra: [String: Value] = [:]) throws -> String {
        try makeChatTemplate().render(messages: messages, addGenerationPrompt: addGenerationPrompt, tools: tools,
                                      continueFinalMessage: continueFinalMessage, extra: extra)
    }

    /// The same for messages given as objects (tool calls, tool results, content parts).
    public func applyChatTemplate(conversation: [Value], addGenerationPrompt: Bool = true, tools: [Value]? = nil,
                                  continueFinalMessage: Bool = false, extra: [String: Value] = [:]) throws -> String {
        try makeChatTemplate().render(conversation: conversation, addGenerationPrompt: addGenerationPrompt,
                                      tools: tools, continueFinalMessage: continueFinalMessage, extra: extra)
    }
}

extension Value {
    fileprivate var isNoneValue: Bool {
        if case .none = self { return true }
        return false
    }
}
