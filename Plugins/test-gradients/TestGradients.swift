import Foundation
import PluginKit

/// `test-gradients`: drives the host's 1.1 gradient services for TransferTests and encodes
/// what they return as a delta and metadata. Params: `mode` and
///   - "gradient": `examples` ([{tokens, labels?}]), `parameters` ([{target, kind: dense|rows|
///     columns, indices?, values}]); each parameter's ∂loss/∂Δ becomes a delta entry of its
///     kind, the loss goes to metadata `loss`. With `fd` ({eps, count}): central differences
///     of the loss through the ABI at the `count` largest-|g| coordinates of parameter 0, as
///     metadata `fd` and `analytic` (JSON arrays).
///   - "sensitivity": `examples`, `targets`, `repeat` (calls, default 1): each target's buffer
///     as a dense delta; metadata `same_buffer` says whether every call returned the same one.
///   - "lora": `targets`, `rank`, `alpha`, `init_seed` (A, B small and seeded), `compensate`,
///     `examples`, `epochs`, `batch_size`, `lr`, `weight_decay`, `warmup`, `seed`,
///     `add_to_delta`; metadata `final_loss`, `loss_before` (the model as given), `loss_after`
///     (with the trained delta, through loss_and_gradient) and `a_changed`.
///   - "seeking": `examples`, `module` (default mlp.up_proj), `rows` (k): sensitivities of that
///     module in every layer, the k rows with the largest sums, and one gradient step
///     (−`lr`·∂loss/∂Δ) on those rows as a row-sparse delta; metadata `loss_before`,
///     `loss_after` and `rows` (JSON).
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "test-gradients", description: "Test plugin for the host's gradient services.", run: run)
}

private func examples(_ params: [String: Any]) throws -> [Example] {
    guard let list = params["examples"] as? [[String: Any]] else { throw PluginError("examples: a list of {tokens, labels}") }
    return try list.map { e in
        guard let tokens = e["tokens"] as? [NSNumber] else { throw PluginError("an example has no tokens") }
        let labels = (e["labels"] as? [NSNumber]).map { $0.map(\.int32Value) }
        return Example(tokens: tokens.map(\.int32Value), labels: labels)
    }
}

private func json(_ value: Any) -> String {
    (try? JSONSerialization.data(withJSONObject: value)).flatMap { String(data: $0, encoding: .utf8) } ?? "null"
}

/// Small seeded values in [-scale, scale].
private func seeded(_ count: Int, seed: UInt64, scale: Float) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return (Float(z >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
}

private func add(_ host: GraftHost, _ p: DeltaParameter, _ values: [Float]) throws {
    switch p.kind {
    case .dense: try host.addDense(p.target, values)
    case .rows(let r): try host.addRows(p.target, indices: r, values: values)
    case .columns(let c): try host.addColumns(p.target, indices: c, values: values)
    }
}

private func gradientMode(_ host: GraftHost, _ params: [String: Any]) throws {
    let model = try host.targetModel()
    let ex = try examples(params)
    guard let list = params["parameters"] as? [[String: Any]] else { throw PluginError("parameters: a list") }
    let parameters = try list.map { p -> DeltaParameter in
        guard let target = p["target"] as? String, let values = p["values"] as? [NSNumber] else { throw PluginError("a parameter needs target and values") }
        let indices = (p["indices"] as? [NSNumber])?.map(\.int32Value) ?? []
        let kind: DeltaParameter.Kind
        switch p["kind"] as? String {
        case "rows": kind = .rows(indices)
        case "columns": kind = .columns(indices)
        default: kind = .dense
        }
        return DeltaParameter(target: target, kind: kind, values: values.map(\.floatValue))
    }
    let (loss, gradients) = try host.lossAndGradient(model, examples: ex, parameters: parameters)
    try host.setMetadata("loss", "\(loss)")
    for (p, g) in zip(parameters, gradients) { try add(host, p, g) }

    if let fd = params["fd"] as? [String: Any], let first = parameters.first {
        let eps = (fd["eps"] as? NSNumber)?.floatValue ?? 1e-2
        let count = (fd["count"] as? NSNumber)?.intValue ?? 2
        let top = gradients[0].indices.sorted { abs(gradients[0][$0]) > abs(gradients[0][$1]) }.prefix(count)
        var numeric: [Double] = [], analytic: [Double] = []
        for i in top {
            func loss(at shift: Float) throws -> Double {
                var moved = parameters
                moved[0] = DeltaParameter(target: first.target, kind: first.kind, values: first.values)
                moved[0].values[i] += shift
                return try host.lossAndGradient(model, examples: ex, parameters: moved).loss
            }
            numeric.append((try loss(at: eps) - loss(at: -eps)) / (2 * Double(eps)))
            analytic.append(Double(gradients[0][i]))
        }
        try host.setMetadata("fd", json(numeric))
        try host.setMetadata("analytic", json(analytic))
    }
}

private func sensitivityMode(_ host: GraftHost, _ params: [String: Any]) throws {
    let model = try host.targetModel()
    let ex = try examples(params)
    guard let targets = params["targets"] as? [String] else { throw PluginError("targets: a list of names") }
    let repeats = (params["repeat"] as? NSNumber)?.intValue ?? 1
    var buffers: [UnsafeBufferPointer<Float>] = []
    var same = true
    for _ in 0..<max(1, repeats) {
        let b = try host.accumulateSensitivities(model, examples: ex, targets: targets)
        if !buffers.isEmpty { same = same && zip(buffers, b).allSatisfy { $0.baseAddress == $1.baseAddress } }
        buffers = b
    }
    try host.setMetadata("same_buffer", same ? "true" : "false")
    for (name, b) in zip(targets, buffers) { try host.addDense(name, Array(b)) }
}

/// scale · (B A) as a dense [out, in] matrix.
private func product(_ b: [Float], _ a: [Float], out: Int, rank: Int, in cols: Int, scale: Float) -> [Float] {
    var m = [Float](repeating: 0, count: out * cols)
    for o in 0..<out {
        for j in 0..<rank {
            let s = scale * b[o * rank + j]
            if s == 0 { continue }
            for c in 0..<cols { m[o * cols + c] += s * a[j * cols + c] }
        }
    }
    return m
}

private func loraMode(_ host: GraftHost, _ params: [String: Any]) throws {
    let model = try host.targetModel()
    let ex = try examples(params)
    guard let targets = params["targets"] as? [String] else { throw PluginError("targets: a list of names") }
    let rank = (params["rank"] as? NSNumber)?.intValue ?? 2
    let alpha = (params["alpha"] as? NSNumber)?.floatValue ?? Float(rank)
    let initSeed = (params["init_seed"] as? NSNumber)?.uint64Value ?? 1
    let scale = alpha / Float(rank)
    var a: [[Float]] = [], b: [[Float]] = [], shapes: [(Int, Int)] = []
    for (i, t) in targets.enumerated() {
        guard let (out, cols) = host.shape(t) else { throw PluginError("the model has no matrix \(t)") }
        shapes.append((out, cols))
        a.append(seeded(rank * cols, seed: initSeed &+ UInt64(2 * i), scale: 0.2))
        b.append(seeded(out * rank, seed: initSeed &+ UInt64(2 * i + 1), scale: 0.2))
    }
    var request = LoRATraining(targets: targets, a: a, b: b, rank: rank, alpha: alpha, examples: ex)
    request.compensate = (params["compensate"] as? Bool) ?? true
    request.epochs = (params["epochs"] as? NSNumber)?.intValue ?? 1
    request.batchSize = (params["batch_size"] as? NSNumber)?.intValue ?? 8
    request.learningRate = (params["lr"] as? NSNumber)?.floatValue ?? 1e-3
    request.weightDecay = (params["weight_decay"] as? NSNumber)?.floatValue ?? 0
    request.warmupFraction = (params["warmup"] as? NSNumber)?.floatValue ?? 0
    request.seed = (params["seed"] as? NSNumber)?.uint64Value ?? 0
    let addToDelta = (params["add_to_delta"] as? Bool) ?? true

    let before = try host.lossAndGradient(model, examples: ex, parameters: []).loss
    let (a1, b1, finalLoss) = try host.trainLoRA(model, request, addToDelta: addToDelta)
    // The trained delta against the original base, densely, through loss_and_gradient.
    let dense = targets.indices.map { i -> DeltaParameter in
        let (out, cols) = shapes[i]
        var d = product(b1[i], a1[i], out: out, rank: rank, in: cols, scale: scale)
        if request.compensate {
            let d0 = product(b[i], a[i], out: out, rank: rank, in: cols, scale: scale)
            for j in d.indices { d[j] -= d0[j] }
        }
        return DeltaParameter(target: targets[i], kind: .dense, values: d)
    }
    let after = try host.lossAndGradient(model, examples: ex, parameters: dense).loss
    try host.setMetadata("loss_before", "\(before)")
    try host.setMetadata("loss_after", "\(after)")
    try host.setMetadata("final_loss", "\(finalLoss)")
    try host.setMetadata("a_changed", a1 != a || b1 != b ? "true" : "false")
}

private func seekingMode(_ host: GraftHost, _ params: [String: Any]) throws {
    let model = try host.targetModel()
    let ex = try examples(params)
    let module = params["module"] as? String ?? "mlp.up_proj"
    let k = (params["rows"] as? NSNumber)?.intValue ?? 4
    let lr = (params["lr"] as? NSNumber)?.floatValue ?? 1
    guard let layers = host.config["num_hidden_layers"] as? Int, layers > 0 else { throw PluginError("no num_hidden_layers") }
    let targets = (0..<layers).map { "model.layers.\($0).\(module).weight" }
    let sums = try host.accumulateSensitivities(model, examples: ex, targets: targets)
    // Each row's total sensitivity; the top k rows over all layers.
    var scored: [(score: Float, layer: Int, row: Int)] = []
    for (l, t) in targets.enumerated() {
        guard let (rows, cols) = host.shape(t) else { throw PluginError("no matrix \(t)") }
        let buffer = sums[l]
        for r in 0..<rows {
            var total: Float = 0
            for c in 0..<cols { total += buffer[r * cols + c] }
            scored.append((total, l, r))
        }
    }
    let top = scored.sorted { $0.score > $1.score }.prefix(k)
    var chosen: [Int: [Int32]] = [:]
    for s in top { chosen[s.layer, default: []].append(Int32(s.row)) }
    let parameters = chosen.keys.sorted().map { l -> DeltaParameter in
        let rows = chosen[l]!.sorted()
        let cols = host.shape(targets[l])!.cols
        return DeltaParameter(target: targets[l], kind: .rows(rows), values: [Float](repeating: 0, count: rows.count * cols))
    }
    let (before, gradients) = try host.lossAndGradient(model, examples: ex, parameters: parameters)
    var stepped = parameters
    for i in stepped.indices { stepped[i].values = gradients[i].map { -lr * $0 } }
    let after = try host.lossAndGradient(model, examples: ex, parameters: stepped).loss
    for p in stepped { try add(host, p, p.values) }
    try host.setMetadata("loss_before", "\(before)")
    try host.setMetadata("loss_after", "\(after)")
    try host.setMetadata("rows", json(top.map { [$0.layer, $0.row] }))
}

private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
    PluginKit.run(host, builder, params, error, capacity) { host, params in
        switch params["mode"] as? String {
        case "gradient": try gradientMode(host, params)
        case "sensitivity": try sensitivityMode(host, params)
        case "lora": try loraMode(host, params)
        case "seeking": try seekingMode(host, params)
        default: throw PluginError("mode must be gradient, sensitivity, lora or seeking")
        }
    }
}
