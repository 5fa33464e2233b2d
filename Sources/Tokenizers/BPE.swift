import Foundation

/// The `BPE` model of tokenizer.json: a vocabulary keyed by the tokens' UTF-8 bytes and merges
/// keyed by pairs of ids, applied to a word in tokenizers' order (lowest rank first, leftmost
/// among equal ranks) with the same priority queue, so even files whose merges collide behave
/// as tokenizers does.
final class BPEModel: Sendable {
    /// token bytes → id
    let vocab: [[UInt8]: Int]
    /// id → token (as scalars), nil for ids the vocabulary skips
    let tokens: [Scalars?]
    /// (left id << 32 | right id) → (rank, merged id)
    let merges: [UInt64: (rank: Int32, id: Int32)]
    /// single-scalar tokens, the starting symbols of a word when no prefix/suffix applies
    let scalarVocab: [UInt32: Int32]
    /// the same for scalars below U+0800 (all of the byte-level alphabet), -1 where absent
    let lowScalarVocab: [Int32]
    let unkID: Int?
    let fuseUnk: Bool
    let byteFallback: Bool
    let byteFallbackIDs: [Int]?
    let ignoreMerges: Bool
    let continuingSubwordPrefix: Scalars?
    let endOfWordSuffix: Scalars?
    let cache = WordCache(capacity: 10_000)

    init(_ r: JSONReader) throws(TokenizerError) {
        let vocabReader = try r.required("vocab")
        var vocab: [[UInt8]: Int] = [:]
        var maxID = -1
        let members = try vocabReader.members()
        vocab.reserveCapacity(members.count)
        var byID: [(Int, String)] = []
        byID.reserveCapacity(members.count)
        for (key, value) in members {
            let id = try value.int()
            guard id >= 0 && id < 1 << 31 else { throw .invalidValue(path: value.path, problem: "id out of range") }
            vocab[Array(key.utf8)] = id
            byID.append((id, key))
            maxID = max(maxID, id)
        }
        var tokens = [Scalars?](repeating: nil, count: maxID + 1)
        var scalarVocab: [UInt32: Int32] = [:]
        for (id, key) in byID {
            let scalars = Array(key.unicodeScalars)
            tokens[id] = scalars
            if scalars.count == 1 { scalarVocab[scalars[0].value] = Int32(id) }
        }
        self.vocab = vocab
        self.tokens = tokens
        self.scalarVocab = scalarVocab
        var low = [Int32](repeating: -1, count: 0x800)
        for (v, id) in scalarVocab where v < 0x800 { low[Int(v)] = id }
        lowScalarVocab = low

        if let u = r.optional("unk_token") {
            let unk = try u.string()
            // tokenizers fails only when an unknown character meets a missing unk token; a
            // missing one here means "no unk".
            unkID = vocab[Array(unk.utf8)]
        } else {
            unkID = nil
        }
        fuseUnk = try r.bool("fuse_unk", default: false)
        byteFallback = try r.bool("byte_fallback", default: false)
        ignoreMerges = try r.bool("ignore_merges", default: false)
        continuingSubwordPrefix = try r.optional("continuing_subword_prefix").map { (p) throws(TokenizerError) in Array(try p.string().unicodeScalars) }
        endOfWordSuffix = try r.optional("end_of_word_suffix").map { (p) throws(TokenizerError) in Array(try p.string().unicodeScalars) }
        if let d = r.optional("dropout"), let p = d.value.double, p > 0 {
            throw .invalidValue(path: d.path, problem: "BPE dropout is not supported (inference only)")
        }
        if byteFallback {
            var ids: [Int] = []
            for b in 0..<256 {
                guard let id = vocab[Array(String(format: "<0x%02X>", b).utf8)] else { break }
                ids.append(id)
            }
            byteFallbackIDs = ids.count == 256 ? ids : nil
        } else {
            byteFallbackIDs = nil
        }

        let prefixBytes = continuingSubwordPrefix.map { Array($0.string.utf8) } ?? []
        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        let mergeList = try r.optional("merges")?.array() ?? []
        merges.reserveCapacity(mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            let a: String, b: String
            if let line = m.value.string {
                // The "a b" form: exactly one space separates the two parts.
                // Split on scalars: " " followed by a combining mark is one Character.
                let parts = line.unicodeScalars.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw .invalidValue(path: m.path, problem: "merge '\(line)' is not two tokens separated by one space")
                }
                a = String(String.UnicodeScalarView(parts[0])); b = String(String.UnicodeScalarView(parts[1]))
            } else if let pair = m.value.array, pair.count == 2, let x = pair[0].string, let y = pair[1].string {
                a = x; b = y
            } else {
                throw .wrongType(path: m.path, expected: "\"a b\" or [\"a\", \"b\"]")
            }
            let ab = Array(a.utf8), bb = Array(b.utf8)
            guard let ia = vocab[ab] else { throw .mergeTokenNotInVocabulary(index: rank, token: a) }
            guard let ib = vocab[bb] else { throw .mergeTokenNotInVocabulary(index: rank, token: b) }
            var merged = ab
            if !prefixBytes.isEmpty && bb.starts(with: prefixBytes) {
                merged.append(contentsOf: bb[prefixBytes.count...])
            } else {
                merged.append(contentsOf: bb)
            }
            guard let id = vocab[merged] else {
                throw .mergeTokenNotInVocabulary(index: rank, token: String(decoding: merged, as: UTF8.self))
            }
            merges[UInt64(ia) << 32 | UInt64(ib)] = (Int32(rank), Int32(id))
        }
        self.merges = merges
    }

    func tokenToID(_ bytes: [UInt8]) -> Int? { vocab[bytes] }

    func token(for id: Int) -> Scalars? { id >= 0 && id < tokens.count ? tokens[id] : nil }

    /// Ids of one pre-tokenized word.
    func tokenize(_ word: Scalars) -> [Int] {
        if word.isEmpty { return [] }
        let key = utf8Bytes(word)
        if let hit = cache[key] { return hit }
        let ids = tokenizeUncached(word, bytes: key)
        // As tokenizers: only words shorter than 256 bytes are cached (a Llama-2 "word" is a
        // whole text; caching those would only hold memory).
        if key.count < 256 { cache[key] = ids }
        return ids
    }

    private func tokenizeUncached(_ word: Scalars, bytes: [UInt8]) -> [Int] {
        if ignoreMerges, let id = vocab[bytes] { return [id] }
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        var pendingUnk = false  // a fused run of unknown characters waiting to be emitted
        let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        for (k, c) in word.enumerated() {
            var found: Int32? = nil
            var piece: Scalars = []
            if plain {
                found = c.value < 0x800 ? lowScalarVocab[Int(c.value)] : scalarVocab[c.value]
                if found == -1 { found = nil }
            } else {
                if k > 0, let p = continuingSubwordPrefix { piece += p }
                piece.append(c)
                if k == word.count - 1, let s = endOfWordSuffix { piece += s }
                found = vocab[Array(piece.string.utf8)].map { Int32($0) }
            }
            if let id = found {
                if pendingUnk, let unk = unkID { symbols.append(Int32(unk)); pendingUnk = false }
                symbols.append(id)
                continue
            }
            if byteFallback {
                // tokenizers looks up "<0xXX>" for every byte of the (prefixed) piece.
                let pieceBytes = plain ? Array(String(c).utf8) : Array(piece.string.utf8)
                var ids: [Int32] = []
                for b in pieceBytes {
                    guard let id = byteFallbackIDs.map({ $0[Int(b)] }) ?? vocab[Array(String(format: "<0x%02X>", b).utf8)] else {
                        ids.removeAll(); break
                    }
                    ids.append(Int32(id))
                }
                if ids.count == pieceBytes.count {
                    symbols.append(contentsOf: ids)
                    continue
                }
            }
            if let unk = unkID {
                if pendingUnk && !fuseUnk { symbols.append(Int32(unk)) }
                pendingUnk = true
            }
        }
        if pendingUnk, let unk = unkID { symbols.append(Int32(unk)) }
        return mergeAll(symbols)
    }

    /// tokenizers' `Word::merge_all`: a min-heap of (rank, position) over adjacent pairs,
    /// symbols kept in a linked list, stale heap entries skipped.
    private func mergeAll(_ start: [Int32]) -> [Int] {
        let n = start.count
        if n < 2 { return start.map(Int.init) }
        var ids = start
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for k in 0..<n {
            prev[k] = Int32(k - 1)
            next[k] = k + 1 < n ? Int32(k + 1) : -1
        }
        var heap = MergeHeap()
        for k in 0..<n - 1 {
            if let m = merges[UInt64(UInt32(ids[k])) << 32 | UInt64(UInt32(ids[k + 1]))] {
                heap.push(rank: m.rank, pos: Int32(k), id: m.id)
            }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard let m = merges[UInt64(UInt32(ids[pos])) << 32 | UInt64(UInt32(ids[right]))], m.id == top.id else {
                continue
            }
            ids[pos] = top.id
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(pos) }
            if prev[pos] >= 0 {
                let p = Int(prev[pos])
                if let m = merges[UInt64(UInt32(ids[p])) << 32 | UInt64(UInt32(ids[pos]))] {
                    heap.push(rank: m.rank, pos: Int32(p), id: m.id)
                }
            }
            if next[pos] >= 0 {
                let q = Int(next[pos])
                if let m = merges[UInt64(UInt32(ids[pos])) << 32 | UInt64(UInt32(ids[q]))] {
                    heap.push(rank: m.rank, pos: Int32(pos), id: m.id)
                }
            }
        }
        var out: [Int] = []
        out.reserveCapacity(n)
        for k in 0..<n where alive[k] { out.append(Int(ids[k])) }
        return out
    }
}

/// The UTF-8 encoding of scalars, without going through `String`.
func utf8Bytes(_ scalars: Scalars) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(scalars.count * 2)
    for c in scalars {
        let v = c.value
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v < 0x800 {
            out.append(UInt8(0xC0 | v >> 6)); out.append(UInt8(0x80 | v & 0x3F))
        } else if v < 0x10000 {
            out.append(UInt8(0xE0 | v >> 12)); out.append(UInt8(0x80 | v >> 6 & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
        } else {
            out.append(UInt8(0xF0 | v >> 18)); out.append(UInt8(0x80 | v >> 12 & 0x3F))
            out.append(UInt8(0x80 | v >> 6 & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
        }
    }
    return out
}

/// Binary min-heap ordered by (rank, pos), as tokenizers' `Merge` ordering.
struct MergeHeap {
    struct Entry { var rank: Int32; var pos: Int32; var id: Int32 }
    private var items: [Entry] = []

    @inline(__always) private func less(_ a: Entry, _ b: Entry) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos
    }

    mutating func push(rank: Int32, pos: Int32, id: Int32) {
        items.append(Entry(rank: rank, pos: pos, id: id))
        var k = items.count - 1
        while k > 0 {
            let parent = (k - 1) / 2
            if less(items[k], items[parent]) { items.swapAt(k, parent); k = parent } else { break }
        }
    }

    mutating func pop() -> Entry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var k = 0
        while true {
            let l = 2 * k + 1, r = l + 1
            var m = k
            if l < items.count && less(items[l], items[m]) { m = l }
            if r < items.count && less(items[r], items[m]) { m = r }
            if m == k { break }
            items.swapAt(k, m)
            k = m
        }
        return first
    }
}

/// A bounded word → ids cache shared by all threads (tokenizers caps its cache at 10,000 words
/// and stops inserting when full; so does this one).
final class WordCache: @unchecked Sendable {
    private var map: [[UInt8]: [Int]] = [:]
    private let lock = NSLock()
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    subscript(key: [UInt8]) -> [Int]? {
        get { lock.lock(); defer { lock.unlock() }; return map[key] }
        set {
            lock.lock(); defer { lock.unlock() }
            if map.count < capacity { map[key] = newValue }
        }
    }
}
