import ArgumentParser
import TensorCore

@main
struct Graft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graft",
        abstract: "Serve Llama-family models and hot-inject knowledge transferred from larger ones.",
        subcommands: [GenerateCommand.self, ChatCommand.self, FinetuneCommand.self, BenchCommand.self, MakeModelCommand.self, SysInfo.self, TokenizeCommand.self, ServeCommand.self, DataCommand.self, EvalCommand.self, DeltaCommand.self, VariantCommand.self]
    )
}

struct SysInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sysinfo", abstract: "Print the kernels chosen for this CPU.")

    func run() throws {
        let f = SystemInfo.cpuFeatures
        print("openblas core: \(SystemInfo.openBLASCoreName)")
        print("graft kernels: \(SystemInfo.kernelName)")
        print("bf16 activations (--activations bf16): \(bf16ActivationPath.rawValue)")
        print("cpu: avx2+fma=\(f.avx2_fma) avx512=\(f.avx512f) avx512bf16=\(f.avx512bf16) f16c=\(f.f16c)")
    }
}
