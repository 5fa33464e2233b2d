import Foundation
import Testing
@testable import Training

@Suite struct OptimizerTests {
    /// Ten AdamW steps of a full fine-tune (tied embeddings, biases), two accumulated
    /// micro-batches per step, clipping at 1.0, linear warm-up: the losses and the final
    /// parameters of torch.
    @Test func tenAdamWStepsReproduceTorch() throws {
        let ref = try Reference("adamw.safetensors")
        let batchRef = try Reference("grads-qwen2-tiny-f32.safetensors")
        let all = try batchRef.batch().sequences
        let micro = try JSONDecoder().decode([[Int]].self, from: Data(ref.file.metadata["micro_batches"]!.utf8))
        let model = try loadTiny("qwen2-tiny-f32")
        let slots = model.fullFineTuneParameters()
        let opt = AdamW(slots, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        let schedule = LearningRateSchedule.linear(lr: 2e-3, warmup: 3, total: 10)
        let expectedLR = try JSONDecoder().decode([Double].self, from: Data(ref.file.metadata["lrs"]!.utf8))
        let expectedLoss = try ref.floats("losses")
        for step in 0..<10 {
            model.zeroGradients()
            var total = 0.0
            for mb in micro {
                let batch = TrainingBatch(mb.map { all[$0] })
                // Each micro-batch's mean, divided by the number of micro-batches (as the fixture).
                total += try model.lossAndGradients(batch, normalizer: Double(batch.lossTokens * micro.count)).loss
            }
            clipGradientNorm(slots, maxNorm: 1)
            let lr = schedule.rate(at: step)
            #expect(abs(Double(lr) - expectedLR[step]) <= 1e-9 + 1e-6 * expectedLR[step])
            opt.step(lr: lr)
            #expect(abs(total - Double(expectedLoss[step])) <= 2e-5 * Double(expectedLoss[step]), "step \(step): \(total) vs \(expectedLoss[step])")
        }
        var worst = 0.0
        for key in ref.file.names where key.hasPrefix("param.") {
            let name = String(key.dropFirst(6))
            let got = try #require(model.parameter(name), "\(name)")
            let err = relativeError(got, try ref.floats(key))
            worst = max(worst, err)
            // Updates move the weights ~9% here; AdamW's m/√v turns last-bit gradient
            // differences on near-zero coordinates into ±lr steps, so parameters agree to
            // ~1.6e-4 of their norm (≈2e-3 of the update) while the losses agree to 1e-6.
            #expect(err <= 5e-4, "\(name): \(err)")
        }
        print("AdamW: worst relative parameter error after 10 steps \(worst)")
    }

    @Test func oneCycleMatchesTorch() throws {
        let ref = try Reference("adamw.safetensors")
        let expected = try JSONDecoder().decode([Double].self, from: Data(ref.file.metadata["onecycle"]!.utf8))
        let s = LearningRateSchedule.oneCycle(maxLR: 3e-5, total: 20, pctStart: 0.1, divFactor: 25, finalDivFactor: 1)
        for (i, e) in expected.enumerated() {
            #expect(abs(Double(s.rate(at: i)) - e) <= 1e-6 * e, "step \(i): \(s.rate(at: i)) vs \(e)")
        }
    }

    @Test func sgdAndClipping() throws {
        let value = Tensor(shape: [3], values: [1, 2, 3]), grad = Tensor(shape: [3], values: [3, 0, 4])
        let slots = [ParameterSlot(name: "w", value: value.data, gradient: grad.data, count: 3)]
        let norm = clipGradientNorm(slots, maxNorm: 1)
        #expect(abs(norm - 5) < 1e-6)
        #expect(abs(grad[0] - 0.6) < 1e-5 && abs(grad[2] - 0.8) < 1e-5)
        let sgd = SGD(slots, momentum: 0.9)
        sgd.step(lr: 0.5)
        sgd.step(lr: 0.5)
        // Second step uses momentum buffer 0.9·g + g.
        #expect(abs(value[0] - (1 - 0.5 * 0.6 - 0.5 * 1.9 * 0.6)) < 1e-5)
    }
}
