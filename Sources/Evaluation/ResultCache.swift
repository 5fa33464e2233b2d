import Foundation
import TensorCore

/// Results keyed by (variant fingerprint, task, protocol, item, seed), one append-only JSONL file
/// per (fingerprint, task, protocol). Results stream to disk as they arrive, so an interrupted
/// run resumes where it stopped, and a new B reuses A's answers when A is the same variant.
public final class ResultCache: @unchecked Sendable {
    public let directory: String?
    private let lock = NSLock()
    private var loaded: [String: [String: ItemResult]] = [:]
    private var handles: [String: FileHandle] = [:]

    /// `directory` nil disables caching (every item is asked of the server).
    public init(directory: String?) throws(EvaluationError) {
        self.directory = directory
        if let directory {
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw .data("cannot create cache \(directory): \(error)")
            }
        }
    }

    func file(fingerprint: String, task: String, protocolID: String) -> String {
        directory! + "/" + String(SHA256Digest.hex("\(fingerprint)\n\(task)\n\(protocolID)").prefix(24)) + ".jsonl"
    }

    static func key(_ item: String, _ seed: Int) -> String { "\(item)#\(seed)" }

    /// Every cached result of this (fingerprint, task, protocol), by item and seed. A truncated
    /// last line (a run killed mid-write) is ignored.
    public func results(fingerprint: String, task: String, protocolID: String) -> [String: ItemResult] {
        guard directory != nil else { return [:] }
        let path = file(fingerprint: fingerprint, task: task, protocolID: protocolID)
        lock.lock(); defer { lock.unlock() }
        if let r = loaded[path] { return r }
        var out: [String: ItemResult] = [:]
        if let data = FileManager.default.contents(atPath: path) {
            let dec = JSONDecoder()
            for line in data.split(separator: UInt8(ascii: "\n")) {
                if let r = try? dec.decode(ItemResult.self, from: Data(line)),
                   r.fingerprint == fingerprint, r.protocolID == protocolID {
                    out[Self.key(r.item, r.seed)] = r
                }
            }
        }
        loaded[path] = out
        return out
    }

    public func store(_ r: ItemResult) {
        guard directory != nil else { return }
        let path = file(fingerprint: r.fingerprint, task: r.task, protocolID: r.protocolID)
        var stored = r
        stored.cached = nil
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard var line = try? enc.encode(stored) else { return }
        line.append(UInt8(ascii: "\n"))
        lock.lock(); defer { lock.unlock() }
        appendLine(line, path: path)
    }

    private func appendLine(_ line: Data, path: String) {
        if handles[path] == nil {
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            handles[path] = FileHandle(forWritingAtPath: path)
            _ = try? handles[path]?.seekToEnd()
        }
        handles[path]?.write(line)
    }

    deinit { for h in handles.values { try? h.close() } }
}

/// An append-only JSONL writer shared by worker threads (`items.jsonl`).
public final class JSONLWriter: @unchecked Sendable {
    private let lock = NSLock()
    private let handle: FileHandle
    public init(path: String) throws(EvaluationError) {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let h = FileHandle(forWritingAtPath: path) else { throw .data("cannot write \(path)") }
        handle = h
    }
    public func write<T: Encodable>(_ value: T) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard var d = try? enc.encode(value) else { return }
        d.append(UInt8(ascii: "\n"))
        lock.lock(); handle.write(d); lock.unlock()
    }
    deinit { try? handle.close() }
}
