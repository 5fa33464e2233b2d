// swift-tools-version: 6.0
import PackageDescription

// Layers follow ../shared/DESIGN.md: a target imports only the ones below it.
let package = Package(
    name: "Graft",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "graft", targets: ["graft"]),
        // Strategy plugins: dynamic libraries the host dlopens from the plugin directory, never links.
        .library(name: "zero-delta", type: .dynamic, targets: ["ZeroDeltaPlugin"]),
        .library(name: "random-sparse", type: .dynamic, targets: ["RandomSparsePlugin"]),
        .library(name: "delta-file", type: .dynamic, targets: ["DeltaFilePlugin"]),
        .library(name: "test-bad-abi", type: .dynamic, targets: ["TestBadABIPlugin"]),
        .library(name: "test-gradients", type: .dynamic, targets: ["TestGradientsPlugin"]),
        .library(name: "test-crash", type: .dynamic, targets: ["TestCrashPlugin"]),
        .library(name: "test-services", type: .dynamic, targets: ["TestServicesPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libuv1-dev, libhttp-parser-dev).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv",
                       providers: [.apt(["libuv1-dev"])]),
        // libhttp-parser-dev ships no pkg-config file: the module map links it by name.
        .systemLibrary(name: "CHTTPParser", providers: [.apt(["libhttp-parser-dev"])]),

        // Hot kernels in C with per-function target attributes, chosen at run time from CPUID.
        .target(name: "CKernels",
                cSettings: [.unsafeFlags(["-O3"])]),

        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CKernels"]),
        // SVD and PCA through LAPACK, shared by the training engine and PluginKit.
        .target(name: "LinearAlgebra", dependencies: ["COpenBLAS"]),
        .target(name: "SafeTensors", dependencies: ["TensorCore"]),
        // The Jinja subset that real chat templates use (no Swift Jinja package exists here).
        .target(name: "Jinja"),
        .target(name: "Tokenizers", dependencies: ["Jinja"]),
        .target(name: "LanguageModel", dependencies: ["TensorCore", "SafeTensors", "Tokenizers"]),
        // Backward passes, losses, optimizers, LoRA: the training engine PKT needs (issue 7).
        // Training kernels in C (-O3 even in debug; AVX2 clones chosen at run time).
        .target(name: "CTrainKernels",
                cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Training", dependencies: ["LanguageModel", "TensorCore", "SafeTensors", "Tokenizers", "COpenBLAS", "CTrainKernels", "LinearAlgebra"]),
        // Deltas, variants, merge operators, the plugin host (issue 6).
        .target(name: "Transfer", dependencies: ["LanguageModel", "SafeTensors", "TensorCore", "Tokenizers", "Jinja", "Training", "GraftPluginABI", "COpenBLAS"]),
        // The plugin boundary: one C header (DESIGN.md, Plugin boundary), and the Swift side
        // compiled into each plugin.
        .target(name: "GraftPluginABI"),
        .target(name: "PluginKit", dependencies: ["GraftPluginABI", "COpenBLAS", "LinearAlgebra"]),
        .target(name: "ZeroDeltaPlugin", dependencies: ["PluginKit"], path: "Plugins/zero-delta"),
        .target(name: "RandomSparsePlugin", dependencies: ["PluginKit"], path: "Plugins/random-sparse"),
        .target(name: "DeltaFilePlugin", dependencies: ["PluginKit"], path: "Plugins/delta-file"),
        .target(name: "TestBadABIPlugin", dependencies: ["PluginKit"], path: "Plugins/test-bad-abi"),
        .target(name: "TestGradientsPlugin", dependencies: ["PluginKit"], path: "Plugins/test-gradients"),
        .target(name: "TestCrashPlugin", dependencies: ["PluginKit"], path: "Plugins/test-crash"),
        .target(name: "TestServicesPlugin", dependencies: ["PluginKit"], path: "Plugins/test-services"),
        // libuv event loop, HTTP/1.1, OpenAI-compatible routes, the engine thread (issue 5).
        .target(name: "Server", dependencies: [
            "LanguageModel", "Transfer", "Tokenizers", "TensorCore", "CLibUV", "CHTTPParser",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // Benchmarks, prompts, answer extraction, sandbox, paired statistics (issue 8).
        .target(name: "Evaluation", dependencies: ["TensorCore"]),
        .executableTarget(name: "graft", dependencies: [
            "LanguageModel", "Tokenizers", "SafeTensors", "TensorCore", "Server", "Evaluation", "Training", "Transfer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CLibUV", "CHTTPParser"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TensorCore"]),
        .testTarget(name: "JinjaTests", dependencies: ["Jinja", "Tokenizers"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "LanguageModel", "SafeTensors", "TensorCore", "Tokenizers"]),
        .testTarget(name: "ServerTests", dependencies: [
            "Server", "Evaluation", "Transfer", "LanguageModel", "SafeTensors", "Tokenizers", "TensorCore", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "TransferTests", dependencies: ["Transfer", "LanguageModel", "SafeTensors", "TensorCore", "Training", "Tokenizers", "GraftPluginABI"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation"]),
        .testTarget(name: "PluginKitTests", dependencies: ["PluginKit", "SafeTensors"]),
        .testTarget(name: "LanguageModelTests", dependencies: ["LanguageModel", "Tokenizers", "SafeTensors", "TensorCore"]),
    ],
    swiftLanguageModes: [.v6]
)
