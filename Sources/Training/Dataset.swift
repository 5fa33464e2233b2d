import Foundation
import Tokenizers

/// Training data from JSON Lines (issue 7): `{"prompt": …, "completion": …}` (loss on the
/// completion) or `{"messages": [{"role", "content"}, …]}` (the chat template; loss on the
/// assistant turns). Long examples are cut to `maxTokens`.
public enum TrainingData {
    public static func load(path: String, tokenizer: Tokenizer, maxTokens: Int) throws -> [TrainingSequence] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw TrainingError.invalidData("cannot read \(path)")
        }
        var out: [TrainingSequence] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw TrainingError.invalidData("\(path):\(i + 1): not a JSON object")
            }
            var seq = try sequence(obj, tokenizer: tokenizer, where: "\(path):\(i + 1)")
            if seq.tokens.count > maxTokens {
                seq.tokens = Array(seq.tokens.prefix(maxTokens))
                seq.labels = Array(seq.labels.prefix(maxTokens))
            }
            if seq.lossTokens > 0 { out.append(seq) }
        }
        guard !out.isEmpty else { throw TrainingError.invalidData("\(path) has no example with loss tokens") }
        return out
    }

    static func sequence(_ obj: [String: Any], tokenizer: Tokenizer, where place: String) throws -> TrainingSequence {
        if let prompt = obj["prompt"] as? String, let completion = obj["completion"] as? String {
            var p = tokenizer.encode(prompt, addSpecialTokens: true)
            if p.isEmpty, let bos = tokenizer.bosTokenID { p = [bos] }
            var c = tokenizer.encode(completion)
            if let eos = tokenizer.eosTokenID { c.append(eos) }
            return TrainingSequence(prompt: p, completion: c)
        }
        if let raw = obj["messages"] as? [[String: Any]] {
            let messages = try raw.map { m -> ChatMessage in
                guard let role = m["role"] as? String, let content = m["content"] as? String else {
                    throw TrainingError.invalidData("\(place): each message needs string role and content")
                }
                return ChatMessage(role: role, content: content)
            }
            return try chatSequence(messages, tokenizer: tokenizer, where: place)
        }
        throw TrainingError.invalidData("\(place): expected {\"prompt\", \"completion\"} or {\"messages\"}")
    }

    /// Renders growing prefixes of the conversation: the text an assistant turn adds after the
    /// generation prompt carries the loss, the rest does not. Each piece is tokenized on its own.
    static func chatSequence(_ messages: [ChatMessage], tokenizer: Tokenizer, where place: String) throws -> TrainingSequence {
        let template = try tokenizer.makeChatTemplate()
        var tokens: [Int] = [], labels: [Int] = []
        var rendered = ""
        func append(_ text: String, loss: Bool) {
            guard !text.isEmpty else { return }
            let ids = tokenizer.encode(text)
            tokens += ids
            labels += loss ? ids : Array(repeating: TrainingSequence.ignoreIndex, count: ids.count)
        }
        for (i, m) in messages.enumerated() where m.role == "assistant" {
            let before = try template.render(messages: Array(messages[..<i]), addGenerationPrompt: true)
            let after = try template.render(messages: Array(messages[...i]), addGenerationPrompt: false)
            guard before.hasPrefix(rendered), after.hasPrefix(before) else {
                throw TrainingError.invalidData("\(place): the chat template does not render prefixes of the conversation as prefixes")
            }
            append(String(before.dropFirst(rendered.count)), loss: false)
            append(String(after.dropFirst(before.count)), loss: true)
            rendered = after
        }
        let full = try template.render(messages: messages, addGenerationPrompt: false)
        if full.hasPrefix(rendered) { append(String(full.dropFirst(rendered.count)), loss: false) }
        return TrainingSequence(tokens: tokens, labels: labels)
    }
}
