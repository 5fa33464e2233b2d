import ArgumentParser
import Foundation
import LanguageModel
import SafeTensors
import Tokenizers
import Transfer

/// `graft delta …`: look at, compare, merge and convert delta files (DESIGN.md, Deltas and variants).
struct DeltaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delta", abstract: "Inspect, compare, merge and export weight deltas.",
        subcommands: [DeltaInspect.self, DeltaDiff.self, DeltaMergeCommand.self, DeltaExportPEFT.self, DeltaBuild.self])
}

/// Loads a model's weights and a builder for its deltas (reading relative paths from
/// `deltaDirectory` when given).
func deltaBuilder(model: String, deltaDirectory: String? = nil) throws -> VariantBuilder {
    do {
        let weights = try ModelWeights(config: try ModelConfig.load(directory: model), storage: try SafeTensorsModel(directory: model))
        return VariantBuilder(weights: weights, deltaDirectory: deltaDirectory)
    } catch {
        throw CLIError("cannot load the model '\(model)': \(error)")
    }
}

func readDelta(_ builder: VariantBuilder, _ path: String) throws -> Delta {
    do { return try builder.readDelta(operatorPath: path) } catch { throw CLIError("\(error)") }
}

struct DeltaInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Print a delta file's metadata and tensors (norms, max |value|).")
    @Argument(help: "Delta file (.safetensors).") var file: String

    func run() throws {
        do { print(try DeltaInspection.describe(path: file)) } catch { throw CLIError("\(error)") }
    }
}

struct DeltaDiff: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Compare two deltas for one model, tensor by tensor (‖A−B‖ / max(‖A‖, ‖B‖)).")
    @Option(help: "Model folder the deltas were made for.") var model: String
    @Argument(help: "Delta A.") var a: String
    @Argument(help: "Delta B.") var b: String

    func run() throws {
        let builder = try deltaBuilder(model: model)
        let da = try readDelta(builder, a), db = try readDelta(builder, b)
        let shapes = builder.shapes
        func dense(_ d: Delta, _ t: String) -> [Float] {
            let (r, c) = shapes[t]!
            var acc = [Float](repeating: 0, count: r * c)
            for e in d.entries[t] ?? [] { for (i, v) in e.densified(rows: r, cols: c).enumerated() { acc[i] += v } }
            return acc
        }
        func norm(_ v: [Float]) -> Double { v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        if da.metadata.modelFingerprint != db.metadata.modelFingerprint { print("fingerprints differ: \(da.metadata.modelFingerprint) \(db.metadata.modelFingerprint)") }
        for t in Set(da.entries.keys).union(db.entries.keys).sorted() {
            let x = dense(da, t), y = dense(db, t)
            let diff = norm(zip(x, y).map { $0 - $1 })
            let scale = max(norm(x), norm(y))
            let side = da.entries[t] == nil ? " (only B)" : db.entries[t] == nil ? " (only A)" : ""
            print(String(format: "%@  ‖A−B‖=%.4g  relative=%.4g%@", t, diff, scale > 0 ? diff / scale : 0, side))
        }
    }
}

struct DeltaMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "merge", abstract: "Merge deltas: weighted sum, TIES or DARE (seeded).")
    @Option(help: "Model folder the deltas were made for.") var model: String
    @Option(name: .customLong("op"), help: "sum, ties or dare.") var op = "sum"
    @Option(help: "Comma-separated weights, one per delta (default 1 each).") var weights: String?
    @Option(help: "TIES: fraction of each delta's values kept (by magnitude).") var density: Float = 0.2
    @Option(help: "DARE: drop probability.") var drop: Float = 0.9
    @Option(help: "DARE: random seed.") var seed: UInt64 = 0
    @Option(name: .shortAndLong, help: "Output delta file.") var output: String
    @Argument(help: "Delta files.") var inputs: [String]

    func run() throws {
        let builder = try deltaBuilder(model: model)
        let operation: DeltaMerge.Operator
        switch op {
        case "sum": operation = .sum
        case "ties": operation = .ties(density: density)
        case "dare": operation = .dare(drop: drop, seed: seed)
        default: throw ValidationError("--op must be sum, ties or dare")
        }
        let w = try weights.map { text in
            try text.split(separator: ",").map { s -> Float in
                guard let v = Float(s.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--weights: '\(s)' is not a number") }
                return v
            }
        }
        do {
            let merged = try DeltaMerge.merge(try inputs.map { try readDelta(builder, $0) }, weights: w, operator: operation,
                                              shapes: builder.shapes, vectors: builder.vectors)
            try DeltaFile.write(merged, shapes: builder.shapes, vectors: builder.vectors, to: output)
            print("wrote \(output): \(merged.entries.count) tensors, \(merged.byteCount) bytes")
        } catch let e as CLIError {
            throw e
        } catch {
            throw CLIError("\(error)")
        }
    }
}

struct DeltaExportPEFT: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export-peft", abstract: "Write a low-rank delta as a PEFT LoRA adapter folder.")
    @Option(help: "Model folder the delta was made for.") var model: String
    @Argument(help: "Delta file with low-rank entries.") var file: String
    @Option(name: .shortAndLong, help: "Output adapter folder.") var output: String

    func run() throws {
        let builder = try deltaBuilder(model: model)
        do {
            try PEFTAdapter.write(try readDelta(builder, file), directory: output,
                                  baseModel: URL(fileURLWithPath: model).standardizedFileURL.lastPathComponent)
        } catch let e as CLIError {
            throw e
        } catch {
            throw CLIError("\(error)")
        }
        print("wrote \(output)/adapter_config.json and adapter_model.safetensors")
    }
}

/// `graft delta build`: runs a strategy plugin and writes its delta into the delta directory.
/// The server runs this in a child process for `POST /v1/transfers` and for plugin variants of
/// `POST`/`PUT /v1/variants`, so that a crashing plugin cannot take the server down; progress
/// goes to stdout as `progress <fraction>` lines, and with `--status-lines` a failure as one
/// `error <kind> <message>` line (`kind` names the `TransferError` case, or `other`).
struct DeltaBuild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build", abstract: "Run a strategy plugin and write its delta (a file in the delta directory).")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Plugin name (from the plugin directory).") var plugin: String
    @Option(help: "The plugin's params, a JSON object.") var params = "{}"
    @Option(help: "Delta directory (delta files a plugin reads, and the output).") var deltaDir = "deltas"
    @Option(help: "Plugin directory (default: beside this executable).") var pluginDir: String?
    @Option(name: .shortAndLong, help: "Output file, relative to the delta directory.") var output: String?
    @Option(help: "Output file at any path (instead of --output).") var outputFile: String?
    @Flag(help: .hidden) var statusLines = false
    @Option(name: .customLong("source"), help: ArgumentHelp("A model the plugin may open by name (repeatable; opened on first use).", valueName: "NAME=DIR"))
    var sources: [String] = []

    func run() throws {
        let path: String
        switch (output, outputFile) {
        case (let output?, nil):
            guard !output.hasPrefix("/"), !output.split(separator: "/").contains(".."), !output.isEmpty else {
                throw ValidationError("--output must be a path inside the delta directory")
            }
            path = deltaDir + "/" + output
        case (nil, let file?) where !file.isEmpty: path = file
        default: throw ValidationError("give one of --output and --output-file")
        }
        do {
            try build(to: path)
        } catch {
            if statusLines {
                let kind = (error as? TransferError)?.kind ?? "other"
                let message = "\(error)".replacingOccurrences(of: "\n", with: " ")
                FileHandle.standardOutput.write(Data("error \(kind) \(message)\n".utf8))
            }
            throw CLIError("\(error)")
        }
        print("wrote \(output ?? path)")
    }

    private func build(to path: String) throws {
        let builder = try deltaBuilder(model: model, deltaDirectory: deltaDir)
        let weights = builder.weights
        let modelSources: ModelSources
        do { modelSources = try ModelSources(arguments: sources) } catch { throw ValidationError("--source: \(error)") }
        var services = PluginServices(
            progress: { fraction, _ in
                // Unbuffered: the server reads progress as it comes.
                FileHandle.standardOutput.write(Data("progress \(fraction)\n".utf8))
            },
            readDelta: { try builder.readDelta(relativePath: $0) })
        services.openModel = modelSources.openModel
        // The target's tokenizer, as the server gives plugins it runs.
        if FileManager.default.fileExists(atPath: model + "/tokenizer.json") {
            let tokenizer = try Tokenizer(directory: model)
            services.tokenizer = tokenizer
            services.tokenize = { @Sendable (text: String, special: Bool) -> [Int] in tokenizer.encode(text, addSpecialTokens: special) }
        }
        let host = PluginHost(directory: pluginDir ?? PluginHost.executableDirectory)
        let delta = try host.run(plugin, params: params, weights: weights, services: services)
        try DeltaValidator.validate(delta, weights: weights, fingerprint: builder.fingerprint, bounds: .unbounded)
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        try DeltaFile.write(delta, shapes: builder.shapes, to: path)
    }
}
