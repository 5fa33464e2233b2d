import CTrainKernels

extension TrainingModel {
    /// Seeking's sensitivity (PKT.md): for each example, the gradient of its loss, then
    /// acc[name] += |θ ⊙ ∂loss/∂θ| over the whole tensor. `accumulators` are caller-owned
    /// buffers (host buffers at the plugin boundary), one per named weight, of the tensor's
    /// element count; a whole model's gradients are never returned.
    public func accumulateSensitivities(_ examples: [TrainingSequence],
                                        into accumulators: [String: UnsafeMutablePointer<Float>]) throws {
        for name in accumulators.keys { try requestGradient(name) }
        for example in examples {
            zeroGradients()
            try lossAndGradients(TrainingBatch([example]))
            for (name, acc) in accumulators {
                guard let g = gradient(name), let theta = parameter(name) else { throw TrainingError.unknownTensor(name) }
                tk_accumulate_sensitivity(acc, theta, g.data, g.count)
            }
        }
    }
}
