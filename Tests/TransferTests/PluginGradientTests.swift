import Foundation
import GraftPluginABI
import LanguageModel
import SafeTensors
import Testing
import TensorCore
import Training
@testable import Transfer

/// The 1.1 gradient services through a real plugin (`test-gradients`, dlopen'ed as the server
/// loads plugins), against the training engine and the torch fixture
/// Tests/Fixtures/training/delta-grads-llama-tiny-f32.safetensors (tools/gen_training_fixtures.py).
@Suite struct PluginGradientTests {
    let host = PluginHost(directory: PluginHost.executableDirectory)
    static let fixture = repositoryRoot + "/Tests/Fixtures/training/delta-grads-llama-tiny-f32.safetensors"

    func refusal(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    /// The fixture's tensors.
    struct Reference {
        let file: SafeTensorsFile
        init() throws { file = try SafeTensorsFile(path: PluginGradientTests.fixture) }

        func floats(_ name: String) throws -> [Float] {
            let raw = try file.data(name)
            return (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        }

        func ints(_ name: String) throws -> [Int] {
            let raw = try file.data(name)
            return (0..<(raw.count / 4)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        }

        /// The padded batch as unpadded sequences (Hugging Face labels).
        func sequences() throws -> [TrainingSequence] {
            let shape = try file.info("batch.input_ids").shape
            let ids = try ints("batch.input_ids"), mask = try ints("batch.attention_mask"), labels = try ints("batch.labels")
            return (0..<shape[0]).map { r in
                let row = (r * shape[1])..<((r + 1) * shape[1])
                let n = mask[row].filter { $0 == 1 }.count
                return TrainingSequence(tokens: Array(ids[row].prefix(n)), labels: Array(labels[row].prefix(n)))
            }
        }

        /// target → (kind, indices) of the fixture's deltas.
        var kinds: [String: String] {
            let json = file.metadata["kind"] ?? "{}"
            return (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: String] ?? [:]
        }
    }

    static func examplesJSON(_ seqs: [TrainingSequence]) -> [[String: Any]] {
        seqs.map { ["tokens": $0.tokens, "labels": $0.labels] }
    }

    static func json(_ object: [String: Any]) -> String {
        String(data: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), encoding: .utf8)!
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in b.indices {
            let d = Double(a[i]) - Double(b[i])
            num += d * d
            den += Double(b[i]) * Double(b[i])
        }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }

    /// The fixture's three deltas as plugin parameters.
    static func parameters(_ ref: Reference) throws -> [[String: Any]] {
        try ref.kinds.keys.sorted().map { target in
            var p: [String: Any] = ["target": target, "values": try ref.floats("delta.\(target).values").map(Double.init)]
            switch ref.kinds[target] {
            case "rows": p["kind"] = "rows"; p["indices"] = try ref.ints("delta.\(target).indices")
            case "cols": p["kind"] = "columns"; p["indices"] = try ref.ints("delta.\(target).indices")
            default: p["kind"] = "dense"
            }
            return p
        }
    }

    static func values(_ entry: DeltaEntry?) -> [Float]? {
        switch entry {
        case .dense(let v)?: v
        case .rows(_, let v)?: v
        case .columns(_, let v)?: v
        default: nil
        }
    }

    // MARK: loss_and_gradient

    @Test func deltaGradientsMatchTheEngineAndTorch() throws {
        let ref = try Reference()
        let seqs = try ref.sequences()
        let params = try Self.parameters(ref)
        #expect(params.count == 3)
        let delta = try host.run("test-gradients", params: Self.json(["mode": "gradient", "examples": Self.examplesJSON(seqs), "parameters": params]),
                                 weights: tinyWeights)

        // The engine itself, on the same deltas.
        let engine = TrainingModel(weights: tinyWeights, pool: WorkerPool(threads: 2))
        for (target, kind) in ref.kinds {
            let values = try ref.floats("delta.\(target).values")
            let l = try #require(engine.linear(named: target))
            switch kind {
            case "rows":
                let idx = try ref.ints("delta.\(target).indices")
                try engine.setDelta(target, .rows(idx, Tensor(shape: [idx.count, l.inFeatures], values: values)))
            case "cols":
                let idx = try ref.ints("delta.\(target).indices")
                try engine.setDelta(target, .columns(idx, Tensor(shape: [l.outFeatures, idx.count], values: values)))
            default:
                try engine.setDelta(target, .dense(Tensor(shape: [l.outFeatures, l.inFeatures], values: values)))
            }
        }
        let result = try engine.lossAndGradients(TrainingBatch(seqs))

        let loss = try #require(delta.metadata.extra["loss"].flatMap(Double.init))
        let torchLoss = Double(try ref.floats("loss")[0])
        #expect(abs(loss - result.loss) <= 1e-6 * result.loss, "ABI loss \(loss), engine \(result.loss)")
        #expect(abs(loss - torchLoss) <= 1e-5 * torchLoss, "ABI loss \(loss), torch \(torchLoss)")
        for target in ref.kinds.keys {
            let entries = try #require(delta.entries[target])
            #expect(entries.count == 1)
            let got = try #require(Self.values(entries.first), "\(target): \(entries)")
            switch (ref.kinds[target], entries.first) {
            case ("rows", .rows(let idx, _)?): #expect(idx == (try ref.ints("delta.\(target).indices")))
            case ("cols", .columns(let idx, _)?): #expect(idx == (try ref.ints("delta.\(target).indices")))
            case ("dense", .dense?): break
            default: Issue.record("\(target): kind \(String(describing: ref.kinds[target])), entry \(String(describing: entries.first))")
            }
            let own = try #require(engine.deltaGradient(target)).values
            #expect(Self.relativeError(got, own) <= 1e-6, "\(target) vs the engine: \(Self.relativeError(got, own))")
            let torch = try ref.floats("grad.delta.\(target)")
            #expect(Self.relativeError(got, torch) <= 1e-4, "\(target) vs torch: \(Self.relativeError(got, torch))")
        }
    }

    /// Central differences of the loss through the ABI at the largest-gradient coordinates.
    @Test(arguments: ["dense", "rows", "cols"])
    func finiteDifferencesAgree(_ kind: String) throws {
        let ref = try Reference()
        let params = try Self.parameters(ref)
        let first = try #require(params.first { p in ref.kinds[p["target"] as! String] == kind })
        let delta = try host.run("test-gradients", params: Self.json([
            "mode": "gradient", "examples": Self.examplesJSON(try ref.sequences()), "parameters": [first],
            "fd": ["eps": 1e-2, "count": 2],
        ]), weights: tinyWeights)
        let fd = try #require(delta.metadata.extra["fd"].flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [Double])
        let analytic = try #require(delta.metadata.extra["analytic"].flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [Double])
        #expect(fd.count == 2 && analytic.count == 2)
        print("\(kind): finite differences \(fd), analytic \(analytic)")
        for (n, a) in zip(fd, analytic) {
            #expect(abs(a) > 1e-4, "the largest gradient entries should not vanish: \(a)")
            #expect(abs(n - a) <= 2e-2 * abs(a) + 2e-5, "\(kind): finite difference \(n), analytic \(a)")
        }
    }

    // MARK: accumulate_sensitivities

    @Test func sensitivitiesMatchTheEngineAndTorchAndAccumulate() throws {
        let ref = try Reference()
        let seqs = try ref.sequences()
        let targets = ["model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.o_proj.weight"]
        let delta = try host.run("test-gradients", params: Self.json([
            "mode": "sensitivity", "examples": Self.examplesJSON(seqs), "targets": targets, "repeat": 2,
        ]), weights: tinyWeights)
        #expect(delta.metadata.extra["same_buffer"] == "true")

        let engine = TrainingModel(weights: tinyWeights, pool: WorkerPool(threads: 2))
        var buffers: [String: Tensor] = [:]
        for t in targets {
            let l = try #require(engine.linear(named: t))
            buffers[t] = Tensor(shape: [l.outFeatures * l.inFeatures])
        }
        for _ in 0..<2 { try engine.accumulateSensitivities(seqs, into: buffers.mapValues { $0.data }) }
        for t in targets {
            guard case .dense(let got)? = delta.entries[t]?.first else { Issue.record("\(t): no dense entry"); continue }
            let own = buffers[t]!.values
            #expect(Self.relativeError(got, own) <= 1e-6, "\(t) vs the engine: \(Self.relativeError(got, own))")
            let torch = try ref.floats("sens.\(t)").map { 2 * $0 }   // two calls add up
            #expect(Self.relativeError(got, torch) <= 1e-4, "\(t) vs torch: \(Self.relativeError(got, torch))")
        }
    }

    // MARK: train_lora

    /// A tiny task: two short sequences to memorise.
    static var task: [[String: Any]] { [
        ["tokens": [1, 17, 42, 99, 5, 33, 200, 7]],
        ["tokens": [1, 250, 11, 40, 41, 12, 9]],
    ] }

    static func loraParams(_ extra: [String: Any]) -> String {
        var p: [String: Any] = [
            "mode": "lora", "targets": ["model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.v_proj.weight"],
            "rank": 2, "alpha": 4, "init_seed": 3, "examples": task, "batch_size": 2, "seed": 5,
        ]
        for (k, v) in extra { p[k] = v }
        return json(p)
    }

    @Test func compensatedStartLeavesTheModelUnchanged() throws {
        // One step over the whole task: its loss is the loss of the start.
        let compensated = try host.run("test-gradients", params: Self.loraParams(["compensate": true, "epochs": 1, "lr": 1e-6]),
                                       weights: tinyWeights)
        let before = try #require(compensated.metadata.extra["loss_before"].flatMap(Double.init))
        let first = try #require(compensated.metadata.extra["final_loss"].flatMap(Double.init))
        #expect(abs(first - before) <= 1e-5 * before, "compensated start: loss \(first), base \(before)")
        // After train_lora the run's model is its base again (the compensation undone): the
        // (tiny) trained delta, added back densely, gives the base loss.
        let after = try #require(compensated.metadata.extra["loss_after"].flatMap(Double.init))
        #expect(abs(after - before) <= 1e-4 * before, "after a compensated run: loss \(after), base \(before)")
        // The delta against the original base: rank 2r low-rank entries, one per target.
        for target in ["model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.v_proj.weight"] {
            guard case .lowRank(_, _, let rank, let scale)? = compensated.entries[target]?.first else {
                Issue.record("\(target): \(String(describing: compensated.entries[target]))")
                continue
            }
            #expect(rank == 4 && scale == 2)
        }
        // Without compensation the start is W + sBA: a different loss.
        let plain = try host.run("test-gradients", params: Self.loraParams(["compensate": false, "epochs": 1, "lr": 1e-6]),
                                 weights: tinyWeights)
        let plainFirst = try #require(plain.metadata.extra["final_loss"].flatMap(Double.init))
        #expect(abs(plainFirst - before) > 1e-4, "uncompensated start: loss \(plainFirst), base \(before)")
        if case .lowRank(_, _, let rank, _)? = plain.entries["model.layers.0.mlp.up_proj.weight"]?.first { #expect(rank == 2) }
    }

    @Test func trainingLowersTheLossAndReportsProgress() throws {
        let progress = ProgressLog()
        let delta = try host.run("test-gradients", params: Self.loraParams(["compensate": true, "epochs": 30, "lr": 2e-2, "warmup": 0.1]),
                                 weights: tinyWeights, services: PluginServices(progress: { f, _ in progress.add(f) }))
        let before = try #require(delta.metadata.extra["loss_before"].flatMap(Double.init))
        let after = try #require(delta.metadata.extra["loss_after"].flatMap(Double.init))
        #expect(after < 0.8 * before, "loss \(before) → \(after)")
        print("train_lora on the tiny task: loss \(before) → \(after)")
        #expect(delta.metadata.extra["a_changed"] == "true")
        #expect(progress.values.last == 1)
        // The delta the builder got applies: a variant with it has the trained loss.
        let (variant, _) = try VariantBuilder(weights: tinyWeights, deltaDirectory: nil).build(name: "lora", deltas: [("plugin:test-gradients", delta)])
        #expect(variant.deltas.count == 2)
    }

    @Test func cancellationStopsTheServices() throws {
        let message = refusal {
            _ = try host.run("test-gradients", params: Self.loraParams(["epochs": 5]), weights: tinyWeights,
                             services: PluginServices(isCancelled: { true }))
        }
        #expect(message?.contains("loss_and_gradient: cancelled") == true, "\(message ?? "no error")")
        // Cancelled in the middle of training: the loss before takes one check, then one a step.
        let checks = ProgressLog(), progress = ProgressLog()
        let midway = refusal {
            _ = try host.run("test-gradients", params: Self.loraParams(["epochs": 10]), weights: tinyWeights,
                             services: PluginServices(progress: { f, _ in progress.add(f) },
                                                      isCancelled: { checks.add(0); return checks.values.count > 4 }))
        }
        #expect(midway?.contains("train_lora: cancelled") == true, "\(midway ?? "no error")")
        #expect(progress.values.count == 3, "\(progress.values)")
    }

    // MARK: Seeking-style smoke

    /// Sensitivities of every layer's up_proj, the top rows by row sum, one gradient step on
    /// them as a row-sparse delta (PKT.md, Seeking, without the SVD/LoRA part).
    @Test func seekingPicksTheMostSensitiveRowsAndStepsDownhill() throws {
        let ref = try Reference()
        let seqs = try ref.sequences()
        let delta = try host.run("test-gradients", params: Self.json([
            "mode": "seeking", "examples": Self.examplesJSON(seqs), "module": "mlp.up_proj", "rows": 4, "lr": 1,
        ]), weights: tinyWeights)
        let before = try #require(delta.metadata.extra["loss_before"].flatMap(Double.init))
        let after = try #require(delta.metadata.extra["loss_after"].flatMap(Double.init))
        #expect(after < before, "loss \(before) → \(after)")
        print("seeking smoke: loss \(before) → \(after), rows \(delta.metadata.extra["rows"] ?? "")")

        // The same top rows from the engine's own sensitivities.
        let engine = TrainingModel(weights: tinyWeights, pool: WorkerPool(threads: 2))
        let names = (0..<2).map { "model.layers.\($0).mlp.up_proj.weight" }
        let buffers = names.map { _ in Tensor(shape: [160 * 64]) }
        try engine.accumulateSensitivities(seqs, into: Dictionary(uniqueKeysWithValues: zip(names, buffers.map(\.data))))
        var scored: [(Float, Int, Int)] = []
        for (l, b) in buffers.enumerated() {
            for r in 0..<160 { scored.append(((0..<64).reduce(Float(0)) { $0 + b[r * 64 + $1] }, l, r)) }
        }
        let expected = Set(scored.sorted { $0.0 > $1.0 }.prefix(4).map { "\($0.1).\($0.2)" })
        var got = Set<String>()
        for (l, name) in names.enumerated() {
            for entry in delta.entries[name] ?? [] {
                guard case .rows(let idx, let values) = entry else { Issue.record("\(name): \(entry)"); continue }
                #expect(values.count == idx.count * 64 && values.contains { $0 != 0 })
                for r in idx { got.insert("\(l).\(r)") }
            }
        }
        #expect(got == expected)
    }

    // MARK: refusals

    @Test func badInputsAreRefusedWithMessages() throws {
        let ex = Self.task
        func gradient(_ parameter: [String: Any]) -> String? {
            refusal { _ = try host.run("test-gradients", params: Self.json(["mode": "gradient", "examples": ex, "parameters": [parameter]]), weights: tinyWeights) }
        }
        let unknown = gradient(["target": "model.layers.9.mlp.up_proj.weight", "kind": "dense", "values": [0]])
        #expect(unknown?.contains("'model.layers.9.mlp.up_proj.weight' is not a weight matrix") == true, "\(unknown ?? "accepted")")
        let norm = gradient(["target": "model.norm.weight", "kind": "dense", "values": [0]])
        #expect(norm?.contains("is not a weight matrix") == true, "\(norm ?? "accepted")")
        let row = gradient(["target": "model.layers.0.mlp.up_proj.weight", "kind": "rows", "indices": [3, 160],
                            "values": [Double](repeating: 0, count: 2 * 64)])
        #expect(row?.contains("row index 160 out of range 0..<160") == true, "\(row ?? "accepted")")
        let column = gradient(["target": "model.layers.0.mlp.down_proj.weight", "kind": "columns", "indices": [-1],
                               "values": [Double](repeating: 0, count: 64)])
        #expect(column?.contains("column index -1 out of range") == true, "\(column ?? "accepted")")
        let token = refusal {
            _ = try host.run("test-gradients", params: Self.json(["mode": "gradient", "examples": [["tokens": [1, 100_000]]], "parameters": []]),
                             weights: tinyWeights)
        }
        #expect(token?.contains("token 100000 outside the vocabulary") == true, "\(token ?? "accepted")")
        let sensitivity = refusal {
            _ = try host.run("test-gradients", params: Self.json(["mode": "sensitivity", "examples": ex, "targets": ["model.nope.weight"]]),
                             weights: tinyWeights)
        }
        #expect(sensitivity?.contains("the model has no tensor 'model.nope.weight'") == true, "\(sensitivity ?? "accepted")")
    }

    /// What the PluginKit wrapper cannot send: a kind outside the enum, NULL pointers, a
    /// repeated target — straight through the host table.
    @Test func rawTableRefusesMalformedParameters() throws {
        var services = PluginServices()
        services.openModel = { _ in PluginModelSource(weights: tinyWeights, tokenizer: nil) }
        let context = RunContext(weights: tinyWeights, services: services)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        let table = HostTable.make(context: unmanaged.toOpaque())
        let model = try #require(table.target_model?(table.data))
        let lossAndGradient = try #require(table.loss_and_gradient)
        let tokens: [Int32] = [1, 17, 42, 99]
        let target = strdup("model.layers.0.self_attn.q_proj.weight")!
        defer { free(target) }
        var values = [Float](repeating: 0, count: 64 * 64), gradient = values
        func call(kind: Int32, twice: Bool = false, nullGradient: Bool = false) -> String? {
            tokens.withUnsafeBufferPointer { t in
                values.withUnsafeBufferPointer { v in
                    gradient.withUnsafeMutableBufferPointer { g in
                        var example = graft_example(tokens: t.baseAddress, labels: nil, length: t.count)
                        let p = graft_delta_parameter(target: target, kind: kind, indices: nil, k: 0, values: v.baseAddress,
                                                      gradient: nullGradient ? nil : g.baseAddress)
                        let ps = twice ? [p, p] : [p]
                        var loss = 0.0
                        let status = ps.withUnsafeBufferPointer { lossAndGradient(model, &example, 1, $0.baseAddress, $0.count, &loss) }
                        return status == 0 ? nil : table.last_error?(table.data).map { String(cString: $0) } ?? "no message"
                    }
                }
            }
        }
        #expect(call(kind: 0) == nil)
        // One TrainingModel per model per run.
        let built = try #require(context.targetModel.trainingState)
        #expect(call(kind: 0) == nil)
        #expect(context.targetModel.trainingState === built)
        #expect(call(kind: 7)?.contains("kind 7 is not a delta kind") == true)
        #expect(call(kind: 1)?.contains("needs k ≥ 1 indices") == true)
        #expect(call(kind: 0, twice: true)?.contains("appears twice") == true)
        #expect(call(kind: 0, nullGradient: true)?.contains("values or gradient is NULL") == true)

        // train_lora adapts decoder-layer projections only, and checks its arguments.
        let trainLoRA = try #require(table.train_lora)
        let embed = strdup("model.embed_tokens.weight")!, q = strdup("model.layers.0.self_attn.q_proj.weight")!
        defer { free(embed); free(q) }
        let source = try #require(table.open_model?(table.data, "other"))
        let builder = OpaquePointer(unmanaged.toOpaque())
        var a = [Float](repeating: 0, count: 2 * 64), b = [Float](repeating: 0, count: 300 * 2)
        func train(_ target: UnsafeMutablePointer<CChar>, rank: Int32 = 2, lr: Float = 1e-3,
                   on handle: OpaquePointer? = nil, builder: OpaquePointer? = nil) -> String? {
            tokens.withUnsafeBufferPointer { t in
                a.withUnsafeMutableBufferPointer { ap in
                    b.withUnsafeMutableBufferPointer { bp in
                        var example = graft_example(tokens: t.baseAddress, labels: nil, length: t.count)
                        var names: [UnsafePointer<CChar>?] = [UnsafePointer(target)]
                        var aList: [UnsafeMutablePointer<Float>?] = [ap.baseAddress], bList: [UnsafeMutablePointer<Float>?] = [bp.baseAddress]
                        return names.withUnsafeMutableBufferPointer { n in
                            aList.withUnsafeMutableBufferPointer { al in
                                bList.withUnsafeMutableBufferPointer { bl in
                                    withUnsafeMutablePointer(to: &example) { e in
                                        var r = graft_lora_request()
                                        r.struct_size = UInt32(MemoryLayout<graft_lora_request>.size)
                                        r.targets = UnsafePointer(n.baseAddress)
                                        r.target_count = 1
                                        r.rank = rank
                                        r.alpha = 2
                                        r.a = UnsafePointer(al.baseAddress)
                                        r.b = UnsafePointer(bl.baseAddress)
                                        r.examples = UnsafePointer(e)
                                        r.example_count = 1
                                        r.epochs = 1
                                        r.batch_size = 1
                                        r.learning_rate = lr
                                        let status = trainLoRA(handle ?? model, &r, builder)
                                        return status == 0 ? nil : table.last_error?(table.data).map { String(cString: $0) } ?? "no message"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(train(embed)?.contains("LoRA adapts decoder-layer projections") == true)
        #expect(train(q, rank: 0)?.contains("rank must be ≥ 1") == true)
        #expect(train(q, lr: 0)?.contains("learning_rate must be positive") == true)
        // A delta is for the run's target: a source model trains only without the builder.
        #expect(train(q, on: source, builder: builder)?.contains("is another (pass a NULL builder)") == true)
        #expect(train(q, on: source) == nil)
        #expect(context.entries.isEmpty)
        #expect(train(q, builder: builder) == nil)
        guard case .lowRank(_, _, let rank, let scale)? = context.entries["model.layers.0.self_attn.q_proj.weight"]?.first else {
            Issue.record("no low-rank entry: \(context.entries)")
            return
        }
        #expect(rank == 2 && scale == 1)
    }
}
