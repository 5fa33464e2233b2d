import ArgumentParser
import Foundation
import Tokenizers

/// `graft tokenize`: text → ids (or ids → text) with a model folder's tokenizer.json, as the
/// Hugging Face `tokenizers` package would produce them.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text as a JSON array (or, with --decode, the text of ids).")

    @Option(name: .long, help: "Model folder holding tokenizer.json (and tokenizer_config.json).")
    var model: String

    @Argument(help: "The text, several arguments joined by spaces (with --decode: ids, as a JSON array or separated by spaces). Read from standard input, less one final newline, when absent.")
    var text: [String] = []

    @Option(name: .long, help: "Read the input from this file instead; a .jsonl file is one {\"text\": ...} per line.")
    var file: String?

    @Flag(name: .long, help: "Add the post-processor's special tokens (e.g. BOS).")
    var addSpecialTokens = false

    @Flag(name: .long, help: "Decode ids to text instead of encoding.")
    var decode = false

    @Flag(name: .long, help: "With --decode, leave special tokens out.")
    var skipSpecialTokens = false

    @Flag(name: .long, help: ArgumentHelp("Time encoding of every string of --file; print tokens/s as JSON.", visibility: .hidden))
    var bench = false

    @Option(name: .long, help: ArgumentHelp("Repeats for --bench.", visibility: .hidden))
    var repeats = 5

    func run() throws {
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(directory: model)
        } catch {
            FileHandle.standardError.write(Data("graft tokenize: \(model): \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        let inputs = try readInputs()
        if bench { return runBench(tokenizer, inputs) }
        for input in inputs {
            if decode {
                print(tokenizer.decode(try parseIDs(input), skipSpecialTokens: skipSpecialTokens))
            } else {
                let ids = tokenizer.encode(input, addSpecialTokens: addSpecialTokens)
                print("[" + ids.map(String.init).joined(separator: ",") + "]")
            }
        }
    }

    private func readInputs() throws -> [String] {
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read \(file)")
            }
            guard file.hasSuffix(".jsonl") else { return [String(decoding: data, as: UTF8.self)] }
            var out: [String] = []
            for (n, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
                do {
                    if let t = try JSONValue.parse(Data(line))["text"]?.string { out.append(t) }
                } catch {
                    throw ValidationError("\(file):\(n + 1): \(error.description)")
                }
            }
            return out
        }
        if !text.isEmpty { return [text.joined(separator: " ")] }
        var stdin = FileHandle.standardInput.readDataToEndOfFile()
        if stdin.last == UInt8(ascii: "\n") { stdin.removeLast() }
        return [String(decoding: stdin, as: UTF8.self)]
    }

    private func parseIDs(_ s: String) throws -> [Int] {
        let cleaned = s.unicodeScalars.map { "[],".unicodeScalars.contains($0) ? " " : Character($0) }
        var ids: [Int] = []
        for part in String(cleaned).split(whereSeparator: { $0.isWhitespace }) {
            guard let id = Int(part) else { throw ValidationError("'\(part)' is not a token id") }
            ids.append(id)
        }
        return ids
    }

    /// Encodes every input `repeats` times on this thread; the word cache stays warm between
    /// repeats, as the `tokenizers` package's does.
    private func runBench(_ tokenizer: Tokenizer, _ inputs: [String]) {
        var seconds: [Double] = []
        var tokens = 0
        for _ in 0..<max(repeats, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            var n = 0
            for s in inputs { n += tokenizer.encode(s).count }
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            tokens = n
        }
        let sorted = seconds.sorted()
        let median = sorted[sorted.count / 2]
        let bytes = inputs.reduce(0) { $0 + $1.utf8.count }
        print(#"{"strings": \#(inputs.count), "bytes": \#(bytes), "tokens": \#(tokens), "seconds": [\#(seconds.map { String(format: "%.5f", $0) }.joined(separator: ", "))], "median_seconds": \#(String(format: "%.5f", median)), "tokens_per_second": \#(Int(Double(tokens) / median))}"#)
    }
}
