import Foundation
import LanguageModel
import TensorCore

/// The engine's batched decode measured alone, without HTTP: `batch` sequences prefilled with
/// the same prompt, then `steps` decode steps of one `Model.forward` over all of them (greedy).
/// The load benchmark (tools/loadtest.py) divides served tokens/s by this figure.
public func measureBatchedDecode(modelDirectory: String, threads: Int?, batch: Int, promptTokens: Int = 32,
                                 steps: Int = 64, activations: ActivationType = .f32) throws -> Double {
    let model = try Model.load(directory: modelDirectory, pool: WorkerPool(threads: threads), activations: activations)
    let prompt = (0..<promptTokens).map { ($0 * 97 + 13) % model.config.vocabSize }
    let caches = (0..<batch).map { _ in model.makeCache(maxTokens: promptTokens + steps + 1) }
    var next = try model.forward(caches.map { ForwardInput(cache: $0, tokens: prompt) }).map { Sampler.argmax($0[0]) }
    let t0 = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<steps {
        let out = try model.forward(zip(caches, next).map { ForwardInput(cache: $0, tokens: [$1]) })
        next = out.map { Sampler.argmax($0[0]) }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    return Double(batch * steps) / seconds
}
