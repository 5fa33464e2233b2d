import Foundation

/// Answer extraction, kept apart from prompting so that the reference checks exercise it.
public enum AnswerExtraction {
    /// GSM8K gold: the text after the last `#### `, commas removed (`"#### 1,000"` → `"1000"`).
    public static func gsm8kGold(_ answer: String) -> String? {
        guard let r = answer.range(of: "####", options: .backwards) else { return nil }
        return normalizeNumber(String(answer[r.upperBound...]))
    }

    /// The paper's rule: the last number in the reply, commas removed.
    public static func lastNumber(_ text: String) -> String? {
        let pattern = #"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+"#
        guard let re = try? NSRegularExpression(pattern: pattern) else { return nil }
        let ns = text as NSString
        guard let m = re.matches(in: text, range: NSRange(location: 0, length: ns.length)).last else { return nil }
        return normalizeNumber(ns.substring(with: m.range))
    }

    /// The strict rule (lm-evaluation-harness' `strict-match`): the number after `#### `.
    public static func strictHashes(_ text: String) -> String? {
        guard let re = try? NSRegularExpression(pattern: #"#### (-?[0-9.,\$]+)"#) else { return nil }
        let ns = text as NSString
        guard let m = re.matches(in: text, range: NSRange(location: 0, length: ns.length)).last else { return nil }
        return normalizeNumber(ns.substring(with: m.range(at: 1)))
    }

    /// Canonical spelling of a number: no `$`, commas or trailing period; `18.00` → `18`; `-0` → `0`.
    public static func normalizeNumber(_ s: String) -> String? {
        var t = s.trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: ",", with: "").replacingOccurrences(of: "$", with: "")
        while t.hasSuffix(".") { t.removeLast() }
        guard !t.isEmpty, let d = Decimal(string: t, locale: Locale(identifier: "en_US_POSIX")),
              t.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }) else { return nil }
        let out = NSDecimalNumber(decimal: d).stringValue
        return out == "-0" ? "0" : out
    }

    /// The code of a chat reply: the first fenced block tagged python (or untagged); the whole
    /// reply when there is no fence (a completion-style answer).
    public static func code(fromReply reply: String) -> String {
        let lines = reply.components(separatedBy: "\n")
        var inBlock = false, block: [String] = [], blocks: [(tag: String, body: String)] = [], tag = ""
        for line in lines {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("```") {
                if inBlock { blocks.append((tag, block.joined(separator: "\n"))); block = []; inBlock = false }
                else { inBlock = true; tag = String(t.dropFirst(3)).lowercased() }
            } else if inBlock { block.append(line) }
        }
        if inBlock, !block.isEmpty { blocks.append((tag, block.joined(separator: "\n"))) }  // truncated reply
        if let b = blocks.first(where: { $0.tag == "python" || $0.tag == "py" || $0.tag == "python3" }) ?? blocks.first {
            return b.body
        }
        return reply
    }

    /// A HumanEval program from a reply: when the reply defines the entry point, the prompt's
    /// preamble (imports and helpers before `def entry_point`) plus the reply's code; otherwise the
    /// reply continues the prompt (completion style).
    public static func humanEvalProgram(task: CodeTask, reply: String) -> String {
        let code = code(fromReply: reply)
        if code.range(of: #"def\s+\#(task.entryPoint)\s*\("#, options: .regularExpression) != nil {
            let preamble: String
            if let r = task.prompt.range(of: #"def\s+\#(task.entryPoint)\s*\("#, options: .regularExpression) {
                preamble = String(task.prompt[..<r.lowerBound])
            } else { preamble = "" }
            return preamble + "\n" + code
        }
        return task.prompt + code
    }
}
