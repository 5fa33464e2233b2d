import Foundation
import LanguageModel
import Testing

@Suite struct SamplingTests {
    @Test func greedyTiesGoToTheLowestID() {
        #expect(Sampler.argmax([0, 3, 1, 3, 2]) == 1)
        #expect(Sampler.argmax([-.infinity, -.infinity, -1]) == 2)
        #expect(Sampler.argmax([.nan, 1, .nan, 1]) == 1)
        var p = SamplingParameters()
        p.temperature = 0
        var s = Sampler(p)
        #expect(s.sample([1, 5, 5, 2]) == 1)
    }

    @Test func aSeedReproducesASample() {
        var p = SamplingParameters()
        p.temperature = 1
        p.seed = 42
        let logits = (0..<100).map { Float($0 % 10) * 0.3 }
        var a = Sampler(p), b = Sampler(p)
        let x = (0..<50).map { _ in a.sample(logits) }
        let y = (0..<50).map { _ in b.sample(logits) }
        #expect(x == y)
        #expect(Set(x).count > 1, "temperature 1 over a flat-ish distribution should vary")
        p.seed = 43
        var c = Sampler(p)
        #expect((0..<50).map { _ in c.sample(logits) } != x)
    }

    @Test func topKKeepsOnlyTheKBest() {
        var p = SamplingParameters()
        p.temperature = 5
        p.topK = 2
        p.seed = 1
        var s = Sampler(p)
        let logits: [Float] = [0, 1, 9, 8, 2]
        let drawn = Set((0..<200).map { _ in s.sample(logits) })
        #expect(drawn == [2, 3])
    }

    @Test func topPKeepsTheSmallestNucleus() {
        var p = SamplingParameters()
        p.temperature = 1
        p.topP = 0.5
        p.seed = 7
        var s = Sampler(p)
        // Probabilities ∝ exp: token 0 alone holds > 0.5 of the mass.
        let logits: [Float] = [5, 3, 3, 0]
        #expect(Set((0..<100).map { _ in s.sample(logits) }) == [0])
    }

    @Test func minPDropsUnlikelyTokens() {
        var p = SamplingParameters()
        p.temperature = 1
        p.minP = 0.2
        p.seed = 3
        var s = Sampler(p)
        // p ∝ [e^2, e^1.5, e^0]: relative to the top, 0.61 and 0.135 → the last is dropped.
        let drawn = Set((0..<300).map { _ in s.sample([2, 1.5, 0]) })
        #expect(drawn == [0, 1])
    }

    @Test func repetitionPenaltyAsTransformers() {
        var logits: [Float] = [2, -2, 1, 4]
        Sampler.applyRepetitionPenalty(&logits, history: [0, 1, 1], penalty: 2)
        #expect(logits == [1, -4, 1, 4])
    }

    @Test func logSoftmaxNormalises() {
        let lp = logSoftmax([1, 2, 3, 1000])
        #expect(abs(lp[3]) < 1e-6)
        let total = lp.map { Double($0) }.reduce(0) { $0 + exp($1) }
        #expect(abs(total - 1) < 1e-6)
    }
}

@Suite struct StopMatcherTests {
    @Test func stopStringSplitAcrossPushesIsNeverShown() {
        var m = StopMatcher(stops: ["</end>"])
        var shown = ""
        for piece in ["Hello <", "/e", "nd> world"] { shown += m.push(piece) }
        shown += m.finish()
        #expect(shown == "Hello ")
        #expect(m.stopped)
    }

    @Test func heldBackTextIsReleasedWhenItIsNotAStop() {
        var m = StopMatcher(stops: ["STOP"])
        #expect(m.push("a ST") == "a ")
        #expect(m.push("x") == "STx")
        #expect(m.finish() == "")
        var n = StopMatcher(stops: ["STOP"])
        #expect(n.push("end ST") == "end ")
        #expect(n.finish() == "ST")
    }

    @Test func earliestOfSeveralStopsWins() {
        var m = StopMatcher(stops: ["b", "a"])
        #expect(m.push("xxabyy") == "xx")
        #expect(m.push("more") == "")
    }

    @Test func noStopsPassesEverythingThrough() {
        var m = StopMatcher(stops: [])
        #expect(m.push("abc") == "abc")
        #expect(m.finish() == "")
    }
}
