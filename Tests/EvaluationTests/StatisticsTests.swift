import Foundation
import Testing
@testable import Evaluation

/// Statistics against scipy (Tests/Fixtures/eval/statistics.json, tools/gen_eval_stats_fixture.py).
@Suite struct StatisticsTests {
    let fx: [String: Any]
    init() throws { fx = try fixtureJSON("statistics.json") }

    @Test func wilsonMatchesScipy() {
        for c in fx["wilson"] as! [[String: Any]] {
            let (lo, hi) = Statistics.wilson(successes: c["k"] as! Int, n: c["n"] as! Int)
            #expect(abs(lo - (c["low"] as! Double)) < 1e-12, "\(c)")
            #expect(abs(hi - (c["high"] as! Double)) < 1e-12, "\(c)")
        }
    }

    @Test func mcnemarMatchesBinomtest() {
        for c in fx["mcnemar"] as! [[String: Any]] {
            let p = Statistics.mcnemarExact(onlyA: c["b"] as! Int, onlyB: c["c"] as! Int)
            let expected = c["p"] as! Double
            #expect(abs(p - expected) <= 1e-10 * max(1, expected), "\(c): \(p)")
        }
    }

    @Test func passAtKMatchesComb() {
        for c in fx["pass_at_k"] as! [[String: Any]] {
            let v = Statistics.passAtK(n: c["n"] as! Int, correct: c["c"] as! Int, k: c["k"] as! Int)
            #expect(abs(v - (c["value"] as! Double)) < 1e-12, "\(c): \(v)")
        }
    }

    @Test func holmAdjustment() {
        for c in fx["holm"] as! [[String: Any]] {
            let got = Statistics.holm(c["p"] as! [Double])
            let want = c["adjusted"] as! [Double]
            #expect(zip(got, want).allSatisfy { abs($0 - $1) < 1e-12 }, "\(got) vs \(want)")
        }
    }

    @Test func quantileIsNumpyLinear() {
        let q = fx["quantile"] as! [String: Any]
        let sorted = (q["values"] as! [Double]).sorted()
        for (p, want) in zip(q["q"] as! [Double], q["expected"] as! [Double]) {
            #expect(abs(Statistics.quantile(sorted: sorted, p) - want) < 1e-12)
        }
    }

    @Test func bootstrapReplaysAndAgreesWithScipy() {
        for c in fx["bootstrap"] as! [[String: Any]] {
            let a = c["a"] as! [Double], b = c["b"] as! [Double]
            let (lo, hi) = Statistics.pairedBootstrap(a: a, b: b, resamples: c["resamples"] as! Int, seed: UInt64(c["seed"] as! Int))
            let replay = c["replay"] as! [Double]
            // Exact: the same SplitMix64 stream replayed in Python.
            #expect(abs(lo - replay[0]) < 1e-12 && abs(hi - replay[1]) < 1e-12, "\(lo), \(hi) vs \(replay)")
            // Independent: scipy.stats.bootstrap (another generator), within Monte Carlo noise of
            // two items' worth of difference.
            let tol = 2.0 / Double(a.count) + 1e-9
            #expect(abs(lo - (c["scipy_low"] as! Double)) <= tol && abs(hi - (c["scipy_high"] as! Double)) <= tol,
                    "\(lo), \(hi) vs scipy \(c["scipy_low"]!), \(c["scipy_high"]!)")
        }
    }

    @Test func identicalArmsGiveZeroInterval() {
        let x: [Double] = (0..<50).map { Double($0 % 3 == 0 ? 1 : 0) }
        let (lo, hi) = Statistics.pairedBootstrap(a: x, b: x, seed: 3)
        #expect(lo == 0 && hi == 0)
        #expect(Statistics.mcnemarExact(onlyA: 0, onlyB: 0) == 1)
    }

    @Test func seededShuffleMatchesPython() {
        let s = fx["shuffle"] as! [String: Any]
        let got = Array(0..<(s["n"] as! Int)).seededShuffle(seed: UInt64(s["seed"] as! Int))
        #expect(got == s["expected"] as! [Int])
    }
}
