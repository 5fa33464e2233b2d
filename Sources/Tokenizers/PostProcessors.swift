/// A `post_processor` of tokenizer.json. Applied only when `addSpecialTokens` is true; the
/// byte-level one only adjusts offsets, which this implementation does not track.
protocol PostProcessor: Sendable {
    func process(_ ids: [Int]) -> [Int]
}

enum PostProcessorType: String {
    case sequence = "Sequence", byteLevel = "ByteLevel", template = "TemplateProcessing"
    case roberta = "RobertaProcessing", bert = "BertProcessing"
}

func makePostProcessor(_ r: JSONReader) throws(TokenizerError) -> any PostProcessor {
    switch try r.type(PostProcessorType.self) {
    case .sequence:
        var items: [any PostProcessor] = []
        for p in try r.required("processors").array() { items.append(try makePostProcessor(p)) }
        return SequencePostProcessor(items: items)
    case .byteLevel:
        return IdentityPostProcessor()
    case .template:
        return try TemplatePostProcessor(r)
    case .roberta, .bert:
        // "cls": ["<s>", 0], "sep": ["</s>", 2]
        func id(_ key: String) throws(TokenizerError) -> Int {
            let pair = try r.required(key).array()
            guard pair.count == 2 else { throw .wrongType(path: r.child(key), expected: "[token, id]") }
            return try pair[1].int()
        }
        return WrapPostProcessor(prefix: [try id("cls")], suffix: [try id("sep")])
    }
}

struct IdentityPostProcessor: PostProcessor {
    func process(_ ids: [Int]) -> [Int] { ids }
}

struct WrapPostProcessor: PostProcessor {
    let prefix: [Int], suffix: [Int]
    func process(_ ids: [Int]) -> [Int] { prefix + ids + suffix }
}

struct SequencePostProcessor: PostProcessor {
    let items: [any PostProcessor]
    func process(_ ids: [Int]) -> [Int] { items.reduce(ids) { $1.process($0) } }
}

/// `TemplateProcessing`'s `single` template: special tokens around sequence `$A`.
struct TemplatePostProcessor: PostProcessor {
    enum Part { case special([Int]), sequence }
    let parts: [Part]

    init(_ r: JSONReader) throws(TokenizerError) {
        var specials: [String: [Int]] = [:]
        if let st = r.optional("special_tokens") {
            for (name, entry) in try st.members() {
                specials[name] = try entry.required("ids").array().map { (x) throws(TokenizerError) in try x.int() }
            }
        }
        var parts: [Part] = []
        for item in try r.required("single").array() {
            if let s = item.optional("SpecialToken") {
                let name = try s.required("id").string()
                guard let ids = specials[name] else {
                    throw .invalidValue(path: s.path, problem: "special token '\(name)' missing from special_tokens")
                }
                parts.append(.special(ids))
            } else if item.optional("Sequence") != nil {
                parts.append(.sequence)
            } else {
                throw .invalidValue(path: item.path, problem: "expected SpecialToken or Sequence")
            }
        }
        self.parts = parts
    }

    func process(_ ids: [Int]) -> [Int] {
        var out: [Int] = []
        for p in parts {
            switch p {
            case .special(let s): out += s
            case .sequence: out += ids
            }
        }
        return out
    }
}
