import Foundation

/// A Hugging Face `tokenizer.json` tokenizer, producing the ids the `tokenizers` package
/// produces: added tokens → normalizer → pre-tokenizer → BPE model → post-processor, and the
/// decoder chain back. Immutable after loading and safe to share between threads.
public final class Tokenizer: Sendable {
    let model: BPEModel
    let normalizer: (any Normalizer)?
    let preTokenizer: (any PreTokenizer)?
    let postProcessor: (any PostProcessor)?
    let decoder: (any Decoder)?
    let added: AddedVocabulary
    let addedByContent: [[UInt8]: Int]
    let specialIDs: Set<Int>

    /// `tokenizer_config.json` as parsed (an empty object when the file is absent).
    public let config: JSONValue
    /// The chat template: `chat_template.jinja` (or the older `chat_template.json`) beside the
    /// files, else `chat_template` in tokenizer_config.json (for a list of named templates, the
    /// one named "default").
    public let chatTemplate: String?
    /// Distinct tokens in the model vocabulary and the added tokens (tokenizers'
    /// `get_vocab_size(with_added_tokens: true)`).
    public let vocabSize: Int
    public let addedTokens: [AddedToken]

    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?
    public let unkToken: String?
    public var bosTokenID: Int? { bosToken.flatMap(tokenToID) }
    public var eosTokenID: Int? { eosToken.flatMap(tokenToID) }
    public var padTokenID: Int? { padToken.flatMap(tokenToID) }
    public var unkTokenID: Int? { unkToken.flatMap(tokenToID) }

    /// Loads `tokenizer.json`, and `tokenizer_config.json` and `chat_template.jinja` if present.
    public convenience init(directory: String) throws(TokenizerError) {
        let dir = URL(fileURLWithPath: directory)
        let jsonPath = dir.appendingPathComponent("tokenizer.json").path
        guard let json = FileManager.default.contents(atPath: jsonPath) else {
            throw .fileNotReadable(path: jsonPath)
        }
        let configPath = dir.appendingPathComponent("tokenizer_config.json").path
        let config = FileManager.default.contents(atPath: configPath)
        // transformers ≥ 4.50 writes chat_template.jinja; 4.43–4.49 wrote chat_template.json.
        let templatePath = dir.appendingPathComponent("chat_template.jinja").path
        var template = FileManager.default.contents(atPath: templatePath).map { String(decoding: $0, as: UTF8.self) }
        if template == nil, let data = FileManager.default.contents(atPath: dir.appendingPathComponent("chat_template.json").path) {
            template = (try? JSONValue.parse(data))?["chat_template"]?.string
        }
        try self.init(json: json, config: config, chatTemplate: template, jsonName: jsonPath, configName: configPath)
    }

    public convenience init(json: Data, config: Data? = nil) throws(TokenizerError) {
        try self.init(json: json, config: config, chatTemplate: nil,
                      jsonName: "tokenizer.json", configName: "tokenizer_config.json")
    }

    init(json: Data, config configData: Data?, chatTemplate template: String?,
         jsonName: String, configName: String) throws(TokenizerError) {
        let root: JSONValue
        do { root = try JSONValue.parse(json) } catch { throw .invalidJSON(file: jsonName, message: error.description) }
        guard case .object = root else { throw .wrongType(path: "(root)", expected: "an object") }
        let r = JSONReader(root, path: "")

        let m = try r.required("model")
        guard m.value.members != nil else { throw .wrongType(path: "model", expected: "an object") }
        let type = try m.optional("type")?.string() ?? (m.optional("merges") != nil ? "BPE" : "(none)")
        guard type == "BPE" else { throw .unsupportedType(path: "model", type: type) }
        model = try BPEModel(m)
        normalizer = try r.optional("normalizer").map { (n) throws(TokenizerError) in try makeNormalizer(n) }
        preTokenizer = try r.optional("pre_tokenizer").map { (p) throws(TokenizerError) in try makePreTokenizer(p) }
        postProcessor = try r.optional("post_processor").map { (p) throws(TokenizerError) in try makePostProcessor(p) }
        decoder = try r.optional("decoder").map { (d) throws(TokenizerError) in try makeDecoder(d) }

        var tokens: [AddedToken] = []
        for t in try r.optional("added_tokens")?.array() ?? [] { tokens.append(try AddedToken(t)) }
        added = AddedVocabulary(tokens: tokens, normalizer: normalizer)
        addedTokens = tokens
        var byContent: [[UInt8]: Int] = [:]
        for t in tokens { byContent[Array(t.content.utf8)] = t.id }
        addedByContent = byContent
        specialIDs = Set(tokens.filter(\.special).map(\.id))
        let vocab = model.vocab
        vocabSize = vocab.count + byContent.keys.filter { vocab[$0] == nil }.count

        var config = JSONValue.object([])
        if let data = configData {
            do { config = try JSONValue.parse(data) } catch {
                throw .invalidJSON(file: configName, message: error.description)
            }
        }
        self.config = config
        func tokenString(_ key: String) -> String? {
            guard let v = config[key] else { return nil }
            return v.string ?? v["content"]?.string
        }
        bosToken = tokenString("bos_token")
        eosToken = tokenString("eos_token")
        padToken = tokenString("pad_token")
        unkToken = tokenString("unk_token")
        if let template {
            chatTemplate = template
        } else if let s = config["chat_template"]?.string {
            chatTemplate = s
        } else if let list = config["chat_template"]?.array {
            let named = list.first { $0["name"]?.string == "default" } ?? list.first
            chatTemplate = named?["template"]?.string
        } else {
            chatTemplate = nil
        }
    }

    // MARK: encode

    /// Token ids of `text`; special tokens (BOS...) from the post-processor only when asked.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        var ids: [Int] = []
        let pieces = added.extractAndNormalize(Array(text.unicodeScalars), normalizer: normalizer)
        for piece in pieces {
            if let id = piece.addedID { ids.append(id); continue }
            if let pre = preTokenizer {
                for word in pre.split(piece) { ids += model.tokenize(word.text) }
            } else {
                ids += model.tokenize(piece.text)
            }
        }
        if addSpecialTokens, let post = postProcessor { ids = post.process(ids) }
        return ids
    }

    // MARK: decode

    /// The text of `ids`; ids that are neither in the vocabulary nor added tokens are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        decodeScalars(ids, skipSpecialTokens: skipSpecialTokens).string
    }

    func decodeScalars(_ ids: [Int], skipSpecialTokens: Bool) -> Scalars {
        var tokens: [Scalars] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let k = added.byID[id] {
                if skipSpecialTokens && added.skippable[k] { continue }
                tokens.append(added.decodeForms[k])
            } else if let t = model.token(for: id) {
                tokens.append(t)
            }
        }
        if let decoder { return decoder.decodeChain(tokens).flatMap { $0 } }
        var out = Scalars()
        for (k, t) in tokens.enumerated() {
            if k > 0 { out.append(" ") }
            out += t
        }
        return out
    }

    // MARK: vocabulary

    /// The id of a token given in its vocabulary spelling (byte-level "Ġhello", "▁hello", "<s>").
    public func tokenToID(_ token: String) -> Int? {
        let bytes = Array(token.utf8)
        return addedByContent[bytes] ?? model.tokenToID(bytes)
    }

    /// The vocabulary spelling of an id.
    public func idToToken(_ id: Int) -> String? {
        if let k = added.byID[id] { return added.tokens[k].content }
        return model.token(for: id)?.string
    }

    public func isSpecial(_ id: Int) -> Bool { specialIDs.contains(id) }

    /// The ids of every special added token, ascending.
    public var specialTokenIDs: [Int] { specialIDs.sorted() }
}
