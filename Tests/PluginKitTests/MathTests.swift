import Foundation
import PluginKit
import SafeTensors
import Testing

/// PluginKit's shared math: SVD and PCA through LAPACK, the MLP and AdamW against torch
/// (Tests/Fixtures/pluginkit, tools/gen_pluginkit_fixtures.py).
@Suite struct MathTests {
    static let fixture: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path + "/Tests/Fixtures/pluginkit/mlp_adamw.safetensors"
    }()

    func values(_ file: SafeTensorsFile, _ name: String) throws -> [Float] {
        let info = try file.info(name), data = try file.data(name)
        return (0..<info.elementCount).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    @Test func svdReconstructsWithOrthonormalFactors() throws {
        let (m, n) = (7, 4)
        let a = (0..<(m * n)).map { Float(sin(Double($0) * 1.3) + 0.1 * Double($0 % 3)) }
        let svd = try SVD(a, rows: m, cols: n)
        #expect(svd.rank == 4)
        #expect(zip(svd.s, svd.s.dropFirst()).allSatisfy { $0 >= $1 })
        var back = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for r in 0..<4 { back[i * n + j] += svd.u[i * 4 + r] * svd.s[r] * svd.vt[r * n + j] } } }
        #expect(maxDiff(back, a) < 1e-5)
        for p in 0..<4 { for q in 0..<4 {
            var uu: Float = 0, vv: Float = 0
            for i in 0..<m { uu += svd.u[i * 4 + p] * svd.u[i * 4 + q] }
            for j in 0..<n { vv += svd.vt[p * n + j] * svd.vt[q * n + j] }
            #expect(abs(uu - (p == q ? 1 : 0)) < 1e-5 && abs(vv - (p == q ? 1 : 0)) < 1e-5)
        } }
        // The rank-1 factors give the best rank-1 approximation: its error is the rest of the spectrum.
        let (b1, a1) = svd.truncated(rank: 1)
        var err: Float = 0
        for i in 0..<m { for j in 0..<n { let d = a[i * n + j] - b1[i] * a1[j]; err += d * d } }
        #expect(abs(err - svd.s.dropFirst().map { $0 * $0 }.reduce(0, +)) < 1e-4)
        #expect(throws: MathError.self) { try SVD([1, 2, 3], rows: 2, cols: 2) }
        #expect(throws: MathError.self) { try SVD([.nan, 1, 1, 1], rows: 2, cols: 2) }
    }

    @Test func pcaFindsTheDominantDirection() throws {
        // Samples along (3, 4)/5 with a little orthogonal spread, around (1, -2).
        var samples: [Float] = []
        for i in 0..<51 {
            let t = Float(i - 25) / 5, e = Float((i * 7) % 5 - 2) * 0.01
            samples += [1 + 0.6 * t - 0.8 * e, -2 + 0.8 * t + 0.6 * e]
        }
        let pca = try PCA(samples: samples, count: 51, dimension: 2, components: 1)
        #expect(maxDiff(pca.mean, [1, -2]) < 1e-3)
        #expect(abs(abs(pca.components[0] * 0.6 + pca.components[1] * 0.8) - 1) < 1e-4)
        #expect(pca.variances[0] > 1)
        #expect(abs(abs(pca.transform([1.6, -1.2])[0]) - 1) < 1e-3)
    }

    @Test func mlpAndAdamWMatchTorch() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        var mlp = try MLP(sizes: [5, 8, 3], activation: .silu, seed: 1)
        mlp.parameters = try ["w0", "b0", "w1", "b1"].map { try values(file, $0) }
        let x = try values(file, "x"), t = try values(file, "t")
        var adam = AdamW(learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1)
        for step in 0..<3 {
            let (y, tape) = try mlp.forward(x, batch: 4)
            let loss = zip(y, t).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(y.count)
            let gradY = zip(y, t).map { 2 * ($0 - $1) / Float(y.count) }
            let (grads, gradX) = try mlp.backward(tape, gradOutput: gradY)
            #expect(gradX.count == 20)
            if step == 0 {
                #expect(abs(loss - (try values(file, "loss"))[0]) < 1e-5)
                for (i, name) in ["w0", "b0", "w1", "b1"].enumerated() {
                    #expect(maxDiff(grads[i], try values(file, "grad." + name)) < 1e-5, "\(name)")
                }
            }
            try adam.update(&mlp.parameters, gradients: grads)
        }
        for (i, name) in ["w0", "b0", "w1", "b1"].enumerated() {
            #expect(maxDiff(mlp.parameters[i], try values(file, "step3." + name)) < 1e-5, "\(name)")
        }
        #expect(adam.step == 3)
    }

    @Test func mlpInputGradientMatchesFiniteDifferences() throws {
        let mlp = try MLP(sizes: [3, 6, 2], activation: .tanh, seed: 9)
        let x: [Float] = [0.3, -0.7, 1.1, 0.05, 0.4, -0.2]
        func loss(_ x: [Float]) throws -> Double {
            try mlp.forward(x, batch: 2).output.enumerated().map { Double($1) * Double($0 + 1) }.reduce(0, +)
        }
        let (_, tape) = try mlp.forward(x, batch: 2)
        let (_, gx) = try mlp.backward(tape, gradOutput: [1, 2, 3, 4])
        for i in x.indices {
            var p = x, q = x
            p[i] += 1e-2
            q[i] -= 1e-2
            let numeric = (try loss(p) - loss(q)) / 2e-2
            #expect(abs(Double(gx[i]) - numeric) < 2e-3, "\(i)")
        }
        #expect(throws: MathError.self) { try mlp.forward([1, 2], batch: 1) }
    }
}
