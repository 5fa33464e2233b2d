import Testing
@testable import Training

/// Forward KL and generalized JSD (β = 0.5, T = 2) to a teacher computed on the fly, against
/// TRL's generalized_jsd_loss under torch autograd.
@Suite struct DistillationTests {
    @Test(arguments: [("fkl", Divergence.forwardKL, Float(1)), ("jsd", Divergence.generalizedJSD(beta: 0.5), Float(2))])
    func matchesTorch(_ tag: String, _ divergence: Divergence, _ temperature: Float) throws {
        let ref = try Reference("distill.safetensors")
        let student = try loadTiny("qwen2-tiny-f32")
        let teacher = try loadTiny("llama-tiny-f32")
        let watch = ref.file.names.filter { $0.hasPrefix("\(tag).grad.") }
        for key in watch { try student.requestGradient(String(key.dropFirst(tag.count + 6))) }
        let result = try student.lossAndGradients(try ref.batch(), objective: .distillation(teacher: teacher, divergence: divergence, temperature: temperature))
        let expected = Double(try ref.floats("\(tag).loss")[0])
        #expect(abs(result.loss - expected) <= 1e-5 * expected, "\(tag) loss \(result.loss) vs \(expected)")
        for key in watch {
            let name = String(key.dropFirst(tag.count + 6))
            let err = relativeError(try #require(student.gradient(name)).data, try ref.floats(key))
            #expect(err <= 1e-4, "\(tag) \(name): \(err)")
        }
    }
}
