import Foundation

/// One chat turn, as `/v1/chat/completions` takes it.
public struct Message: Sendable, Codable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// Renders a conversation with the served model's chat template into the text a
/// `/v1/completions` prompt needs (MMLU scoring). The CLI supplies it from the model folder's
/// tokenizer_config.json (the server has no template route).
public protocol ChatFormatter: Sendable {
    func render(_ messages: [Message], addGenerationPrompt: Bool) throws -> String
}

/// The prompts of each task. Protocol versions are part of the cache key: change the text, bump
/// the version (GSM8K has its own, so a change there keeps the other tasks' cached answers).
public enum Prompts {
    public static let version = "v1"
    /// GSM8K's own version. v2 (2026-11-24) asks for the reasoning first and the `#### N` line
    /// after it: v1's "The last line … should be of the form "#### ANSWER"" made
    /// Qwen2.5-Coder-0.5B open every reply with the literal "#### ANSWER" and skip the reasoning
    /// (2.5% on the first 40 test items; 20% with v2, last-number rule).
    public static let gsm8kVersion = "v2"

    /// GSM8K, zero-shot chain of thought; few-shot examples are earlier chat turns whose answers
    /// are the training solutions (which end in `#### N`).
    public static func gsm8k(_ item: GSM8KItem, shots: [GSM8KItem] = []) -> [Message] {
        var m: [Message] = []
        for s in shots {
            m.append(Message(role: "user", content: gsm8kQuestion(s.question)))
            m.append(Message(role: "assistant", content: s.answer))
        }
        m.append(Message(role: "user", content: gsm8kQuestion(item.question)))
        return m
    }

    static func gsm8kQuestion(_ q: String) -> String {
        "Solve the following math problem step by step. Write out your reasoning first; only after it, on the last line, give the final answer as \"#### \" followed by the number.\n\n" + q
    }

    /// Hendrycks et al.'s MMLU prompt (their `format_example` with the subject header), zero-shot.
    public static func mmluUser(_ item: MMLUItem) -> String {
        var s = "The following are multiple choice questions (with answers) about \(item.subject).\n\n"
        s += item.question
        for (letter, choice) in zip(["A", "B", "C", "D"], item.choices) { s += "\n\(letter). \(choice)" }
        s += "\nAnswer:"
        return s
    }

    /// The start of the assistant's reply that the candidates continue. A chat model's reply
    /// usually opens with "The answer is", so the letter is scored where the model expects it, and
    /// each candidate is `" A"` … `" D"` — a space then the letter, one token in the byte-level
    /// BPE vocabularies (`" A"` and `"A"` are different tokens; after "is" the spaced one is the
    /// natural continuation). Without a chat template the raw prompt ends in "Answer:" and the
    /// candidates are the same `" A"` … `" D"`, as in the original harness.
    public static let mmluAnswerPrefix = "The answer is"
    public static let mmluCandidates = [" A", " B", " C", " D"]

    /// MBPP's prompt of Austin et al. 2021 as lm-evaluation-harness words it, asking for a code block.
    public static func mbpp(_ task: CodeTask) -> [Message] {
        let tests = task.testList.joined(separator: "\n")
        return [Message(role: "user", content: "You are an expert Python programmer, and here is your task: \(task.prompt) Your code should pass these tests:\n\n\(tests)\n\nWrite the function in a single ```python code block.")]
    }

    /// HumanEval for an instruction model: the prompt (signature + docstring) in a code block.
    public static func humanEval(_ task: CodeTask) -> [Message] {
        [Message(role: "user", content: "Complete the following Python function. Reply with the complete function, including the signature, in a single ```python code block.\n\n```python\n\(task.prompt)```")]
    }
}
