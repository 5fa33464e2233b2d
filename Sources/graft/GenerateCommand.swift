import ArgumentParser
import Foundation
import LanguageModel
import TensorCore
import Tokenizers

/// Options shared by `generate` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Maximum number of new tokens.") var maxTokens = 256
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
    @Option(help: "Nucleus sampling mass (1: off).") var topP: Float = 1
    @Option(help: "Drop tokens below min-p × the top probability (0: off).") var minP: Float = 0
    @Option(help: "Repetition penalty (1: off).") var repetitionPenalty: Float = 1
    @Option(help: "Random seed (reproducible sampling).") var seed: UInt64?
    @Option(help: "Stop string (repeatable).") var stop: [String] = []

    func parameters() throws -> SamplingParameters {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP <= 1 else { throw ValidationError("--min-p must be in [0, 1]") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard repetitionPenalty > 0 else { throw ValidationError("--repetition-penalty must be > 0") }
        var p = SamplingParameters()
        p.maxTokens = maxTokens
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repetitionPenalty = repetitionPenalty
        p.seed = seed
        p.stopStrings = stop
        return p
    }
}

struct ModelOptions: ParsableArguments {
    @Option(help: "Model folder (config.json, tokenizer.json, model.safetensors).")
    var model = "models/smollm2-135m-instruct"
    @Option(help: "Worker threads (default: all cores).") var threads: Int?
    @Option(help: kvCacheDtypeHelp)
    var kvCacheDtype: KVCacheType = .f32
    @Option(help: activationsHelp)
    var activations: ActivationType = .f32

    func load() throws -> (Model, Tokenizer) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("model folder '\(model)' does not exist (hint: tools/provision writes models/smollm2-135m-instruct)")
        }
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(directory: model)
        } catch {
            throw CLIError("cannot load the tokenizer of '\(model)': \(error)")
        }
        do {
            let m = try Model.load(directory: model, pool: WorkerPool(threads: threads), kvCacheType: kvCacheDtype,
                                   activations: activations)
            if let warning = m.activationWarning { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            return (m, tokenizer)
        } catch {
            throw CLIError("cannot load the model '\(model)': \(error)")
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Renders a conversation with the model's chat template, as transformers does.
func renderChat(_ tokenizer: Tokenizer, _ messages: [ChatMessage]) throws -> String {
    do {
        return try tokenizer.applyChatTemplate(messages: messages, addGenerationPrompt: true)
    } catch {
        throw CLIError("cannot format the chat: \(error)")
    }
}

/// Generates and streams text to stdout; returns the generated text and the result.
func streamCompletion(model: Model, tokenizer: Tokenizer, promptIDs: [Int],
                      parameters: SamplingParameters) throws -> (String, GenerationResult) {
    var p = parameters
    if let eos = tokenizer.eosTokenID, !p.stopTokens.contains(eos) { p.stopTokens.append(eos) }
    var decoder = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
    var stops = StopMatcher(stops: p.stopStrings)
    var text = ""
    func emit(_ s: String) {
        guard !s.isEmpty else { return }
        text += s
        FileHandle.standardOutput.write(Data(s.utf8))
    }
    let result = try generate(model: model, prompt: promptIDs, parameters: p) { token in
        emit(stops.push(decoder.push(token)))
        return !stops.stopped
    }
    emit(stops.push(decoder.finish()))
    emit(stops.finish())
    return (text, result)
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Generate text from a prompt, streamed to the terminal.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: [.short, .long], help: "The prompt.") var prompt: String
    @Flag(help: "Format the prompt as a user turn with the model's chat template.") var chat = false
    @Option(help: "System message (with --chat).") var system: String?
    @OptionGroup var sampling: SamplingOptions
    @Flag(help: "Print timings to stderr.") var verbose = false

    func run() throws {
        let parameters = try sampling.parameters()
        let (model, tokenizer) = try modelOptions.load()
        var text = prompt
        if chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: prompt))
            text = try renderChat(tokenizer, messages)
        }
        let ids = tokenizer.encode(text, addSpecialTokens: !chat)
        guard !ids.isEmpty else { throw ValidationError("the prompt is empty after tokenization") }
        let (_, result) = try streamCompletion(model: model, tokenizer: tokenizer, promptIDs: ids, parameters: parameters)
        print("")
        if verbose {
            let tps = Double(result.tokens.count) / max(result.decodeSeconds, 1e-9)
            FileHandle.standardError.write(Data("[\(result.promptTokens) prompt tokens in \(String(format: "%.3f", result.prefillSeconds)) s; \(result.tokens.count) tokens at \(String(format: "%.1f", tps)) tok/s; finish: \(result.finishReason.rawValue); kernels \(SystemInfo.kernelName)]\n".utf8))
        }
    }
}

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "Interactive chat with the model's chat template (empty line or EOF ends).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "System message.") var system: String?
    @OptionGroup var sampling: SamplingOptions

    func run() throws {
        let parameters = try sampling.parameters()
        let (model, tokenizer) = try modelOptions.load()
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        while true {
            FileHandle.standardOutput.write(Data("> ".utf8))
            guard let line = readLine(), !line.trimmingCharacters(in: .whitespaces).isEmpty else { break }
            messages.append(ChatMessage(role: "user", content: line))
            let ids = tokenizer.encode(try renderChat(tokenizer, messages), addSpecialTokens: false)
            let (reply, _) = try streamCompletion(model: model, tokenizer: tokenizer, promptIDs: ids, parameters: parameters)
            print("")
            messages.append(ChatMessage(role: "assistant", content: reply))
        }
    }
}
