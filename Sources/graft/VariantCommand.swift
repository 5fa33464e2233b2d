import ArgumentParser
import Foundation
import Transfer

/// `graft variant apply`: a merged model folder (W + Δ) from a model and deltas, offline.
struct VariantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "variant", abstract: "Work with variants offline.", subcommands: [VariantApplyCommand.self])
}

struct VariantApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Write a model folder whose weights are W + Δ.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Delta file or PEFT adapter folder (repeatable; they add up).") var delta: [String]
    @Option(name: .shortAndLong, help: "Output model folder.") var output: String
    @Option(help: "Largest ‖Δ‖/‖W‖ accepted ('inf': no bound).") var maxRelativeNorm = "4"
    @Option(help: "Largest |Δ| value accepted ('inf': no bound).") var maxAbsValue = "16"

    func run() throws {
        guard !delta.isEmpty else { throw ValidationError("give at least one --delta") }
        guard let norm = Float(maxRelativeNorm), let abs = Float(maxAbsValue), norm > 0, abs > 0 else {
            throw ValidationError("--max-relative-norm and --max-abs-value must be positive numbers or inf")
        }
        do {
            try VariantApply.write(modelDirectory: model, deltaPaths: delta, output: output,
                                   bounds: DeltaBounds(maxAbsValue: abs, maxRelativeNorm: norm))
        } catch {
            throw CLIError("\(error)")
        }
        print("wrote \(output)")
    }
}
