import Foundation
import PluginKit

/// `random-sparse`: a seeded random row-sparse delta, for tests and stress. Params: `seed`
/// (integer, default 0), `scale` (values uniform in [-scale, scale], default 0.01), `density`
/// (fraction of rows per matrix in (0, 1], default 0.1), `modules` (default LaTen's
/// `["mlp.up_proj", "mlp.down_proj", "self_attn.v_proj", "self_attn.o_proj"]`).
@_cdecl("graft_plugin_entry_v1")
public func graftPluginEntry(_ host: UnsafePointer<graft_host>?, _ plugin: UnsafeMutablePointer<graft_plugin>?) -> Int32 {
    PluginKit.register(plugin, name: "random-sparse",
                       description: "Seeded random row-sparse delta (params: seed, scale, density, modules).", run: run)
}

/// SplitMix64 (Steele et al. 2014): the same stream for the same seed on every machine.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

private let run: PluginKit.RunFunction = { _, host, builder, params, error, capacity in
    PluginKit.run(host, builder, params, error, capacity) { host, params in
        let seed = (params["seed"] as? NSNumber)?.uint64Value ?? 0
        let scale = (params["scale"] as? NSNumber)?.floatValue ?? 0.01
        let density = (params["density"] as? NSNumber)?.doubleValue ?? 0.1
        let modules = params["modules"] as? [String] ?? ["mlp.up_proj", "mlp.down_proj", "self_attn.v_proj", "self_attn.o_proj"]
        guard density > 0, density <= 1 else { throw PluginError("density must be in (0, 1], got \(density)") }
        guard scale.isFinite, scale >= 0 else { throw PluginError("scale must be a finite number ≥ 0") }
        guard let layers = host.config["num_hidden_layers"] as? Int, layers > 0 else { throw PluginError("the model config has no num_hidden_layers") }
        var rng = SplitMix64(state: seed)
        for layer in 0..<layers {
            if host.isCancelled { throw PluginError("cancelled") }
            for module in modules {
                let target = "model.layers.\(layer).\(module).weight"
                guard let (rows, cols) = host.shape(target) else { throw PluginError("the model has no matrix \(target)") }
                let k = max(1, Int((Double(rows) * density).rounded()))
                // The first k of a seeded Fisher–Yates shuffle, sorted.
                var order = Array(0..<rows)
                for i in 0..<k {
                    let j = i + Int(rng.next() % UInt64(rows - i))
                    order.swapAt(i, j)
                }
                let indices = order[0..<k].sorted().map { Int32($0) }
                let values = (0..<(k * cols)).map { _ in (rng.unit() * 2 - 1) * scale }
                try host.addRows(target, indices: indices, values: values)
            }
            host.progress(Double(layer + 1) / Double(layers))
        }
        try host.setMetadata("seed", "\(seed)")
    }
}
