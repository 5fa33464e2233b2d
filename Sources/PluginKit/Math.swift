import COpenBLAS
import Foundation
@_exported import LinearAlgebra

// Shared math for strategy plugins (DESIGN.md, Plugin boundary): SVD and PCA (LinearAlgebra,
// re-exported; LAPACK's sgesdd, which the host process has loaded), and small MLPs with AdamW for
// hypernetworks. Everything is row-major f32 and single-threaded (use Host.parallelFor to
// split work over the host's pool).

/// Row-major C[m, n] = A[m, k] · op(B) (+ C when accumulate), op(B) = Bᵀ when B is [n, k].
func sgemm(_ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, transB: Bool,
           _ c: UnsafeMutablePointer<Float>, transA: Bool = false, accumulate: Bool = false) {
    guard m > 0, n > 0, k > 0 else {
        if !accumulate, m > 0, n > 0 { c.update(repeating: 0, count: m * n) }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(transA ? m : k), b, Int32(transB ? k : n),
                accumulate ? 1 : 0, c, Int32(n))
}

/// A small multilayer perceptron: Linear layers (weight [out, in], bias [out], PyTorch's
/// layout and default uniform(±1/√in) initialisation) with an activation between them (none
/// after the last). Parameters are plain arrays [W0, b0, W1, b1, …] that AdamW updates.
public struct MLP: Sendable {
    public enum Activation: String, Sendable {
        case relu, tanh, silu, identity
    }

    public let sizes: [Int]
    public let activation: Activation
    /// [W0, b0, W1, b1, …]
    public var parameters: [[Float]]

    public init(sizes: [Int], activation: Activation = .relu, seed: UInt64) throws {
        guard sizes.count >= 2, sizes.allSatisfy({ $0 > 0 }) else { throw MathError("MLP sizes must be at least [in, out], all positive: \(sizes)") }
        self.sizes = sizes
        self.activation = activation
        var state = seed
        func uniform() -> Float {   // SplitMix64 → [0, 1)
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Float((z ^ (z >> 31)) >> 40) / Float(1 << 24)
        }
        var params: [[Float]] = []
        for l in 0..<(sizes.count - 1) {
            let bound = 1 / Float(sizes[l]).squareRoot()
            params.append((0..<(sizes[l + 1] * sizes[l])).map { _ in (uniform() * 2 - 1) * bound })
            params.append((0..<sizes[l + 1]).map { _ in (uniform() * 2 - 1) * bound })
        }
        parameters = params
    }

    public var layerCount: Int { sizes.count - 1 }

    /// What backward needs: each layer's input and pre-activation.
    public struct Tape: Sendable {
        let inputs: [[Float]]
        let preActivations: [[Float]]
        let batch: Int
    }

    func activate(_ z: Float) -> Float {
        switch activation {
        case .relu: max(z, 0)
        case .tanh: Foundation.tanh(z)
        case .silu: z / (1 + expf(-z))
        case .identity: z
        }
    }

    func derivative(_ z: Float) -> Float {
        switch activation {
        case .relu: z > 0 ? 1 : 0
        case .tanh: { let t = Foundation.tanh(z); return 1 - t * t }()
        case .silu: { let s = 1 / (1 + expf(-z)); return s * (1 + z * (1 - s)) }()
        case .identity: 1
        }
    }

    /// y [batch, out] for x [batch, in], and the tape for backward.
    public func forward(_ x: [Float], batch n: Int) throws -> (output: [Float], tape: Tape) {
        guard x.count == n * sizes[0] else { throw MathError("MLP input has \(x.count) values, \(n)×\(sizes[0]) expected") }
        var h = x
        var inputs: [[Float]] = [], pre: [[Float]] = []
        for l in 0..<layerCount {
            let (inDim, outDim) = (sizes[l], sizes[l + 1])
            var z = [Float](repeating: 0, count: n * outDim)
            let w = parameters[2 * l], b = parameters[2 * l + 1]
            for r in 0..<n { for o in 0..<outDim { z[r * outDim + o] = b[o] } }
            h.withUnsafeBufferPointer { hp in
                w.withUnsafeBufferPointer { wp in
                    z.withUnsafeMutableBufferPointer { zp in
                        sgemm(n, outDim, inDim, hp.baseAddress!, wp.baseAddress!, transB: true, zp.baseAddress!, accumulate: true)
                    }
                }
            }
            inputs.append(h)
            pre.append(z)
            h = l == layerCount - 1 ? z : z.map(activate)
        }
        return (h, Tape(inputs: inputs, preActivations: pre, batch: n))
    }

    /// ∂loss/∂parameters (same layout as `parameters`) and ∂loss/∂x, from ∂loss/∂y [batch, out].
    public func backward(_ tape: Tape, gradOutput: [Float]) throws -> (gradients: [[Float]], gradInput: [Float]) {
        let n = tape.batch
        guard gradOutput.count == n * sizes[layerCount] else {
            throw MathError("MLP gradOutput has \(gradOutput.count) values, \(n)×\(sizes[layerCount]) expected")
        }
        var grads = parameters.map { [Float](repeating: 0, count: $0.count) }
        var g = gradOutput
        for l in stride(from: layerCount - 1, through: 0, by: -1) {
            let (inDim, outDim) = (sizes[l], sizes[l + 1])
            if l < layerCount - 1 {
                let z = tape.preActivations[l]
                for i in g.indices { g[i] *= derivative(z[i]) }
            }
            // ∂W = gᵀ·x [out, in]; ∂b = Σ_rows g; ∂x = g·W [n, in].
            var gw = [Float](repeating: 0, count: outDim * inDim)
            var gx = [Float](repeating: 0, count: n * inDim)
            let x = tape.inputs[l], w = parameters[2 * l]
            g.withUnsafeBufferPointer { gp in
                x.withUnsafeBufferPointer { xp in
                    gw.withUnsafeMutableBufferPointer { gwp in
                        sgemm(outDim, inDim, n, gp.baseAddress!, xp.baseAddress!, transB: false, gwp.baseAddress!, transA: true)
                    }
                }
                w.withUnsafeBufferPointer { wp in
                    gx.withUnsafeMutableBufferPointer { gxp in
                        sgemm(n, inDim, outDim, gp.baseAddress!, wp.baseAddress!, transB: false, gxp.baseAddress!)
                    }
                }
            }
            var gb = [Float](repeating: 0, count: outDim)
            for r in 0..<n { for o in 0..<outDim { gb[o] += g[r * outDim + o] } }
            grads[2 * l] = gw
            grads[2 * l + 1] = gb
            g = gx
        }
        return (grads, g)
    }
}

/// AdamW (Loshchilov & Hutter; PyTorch's torch.optim.AdamW): decoupled weight decay
/// θ ← θ − lr·λ·θ, then the bias-corrected Adam step θ ← θ − lr·m̂ / (√v̂ + ε).
public struct AdamW: Sendable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    public private(set) var step = 0
    private var m: [[Float]] = []
    private var v: [[Float]] = []

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// One step over parameter tensors and their gradients (same shapes on every call).
    public mutating func update(_ parameters: inout [[Float]], gradients: [[Float]]) throws {
        guard parameters.count == gradients.count, zip(parameters, gradients).allSatisfy({ $0.count == $1.count }) else {
            throw MathError("AdamW: gradients do not match the parameters' shapes")
        }
        if m.isEmpty {
            m = parameters.map { [Float](repeating: 0, count: $0.count) }
            v = m
        }
        guard m.count == parameters.count, zip(m, parameters).allSatisfy({ $0.count == $1.count }) else {
            throw MathError("AdamW: the parameters changed shape between steps")
        }
        step += 1
        let c1 = 1 - Float(pow(Double(beta1), Double(step))), c2 = 1 - Float(pow(Double(beta2), Double(step)))
        for t in parameters.indices {
            for i in parameters[t].indices {
                let g = gradients[t][i]
                m[t][i] = beta1 * m[t][i] + (1 - beta1) * g
                v[t][i] = beta2 * v[t][i] + (1 - beta2) * g * g
                parameters[t][i] *= 1 - learningRate * weightDecay
                parameters[t][i] -= learningRate * (m[t][i] / c1) / ((v[t][i] / c2).squareRoot() + epsilon)
            }
        }
    }
}
