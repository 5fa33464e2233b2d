import Foundation
import TensorCore

/// Paired A/B statistics over per-item pass/fail outcomes. Every function here is checked against
/// scipy in `Tests/Fixtures/eval/statistics.json` (made by `tools/gen_eval_stats_fixture.py`).
public enum Statistics {
    /// The two-sided 95% normal quantile, `scipy.stats.norm.ppf(0.975)`.
    public static let z95 = 1.959963984540054

    /// Wilson score interval for `successes` out of `n` (Wilson 1927), as
    /// `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")` computes it.
    public static func wilson(successes: Int, n: Int, z: Double = z95) -> (low: Double, high: Double) {
        guard n > 0 else { return (0, 1) }
        let nn = Double(n), p = Double(successes) / nn, z2 = z * z
        let centre = p + z2 / (2 * nn)
        let half = z * (p * (1 - p) / nn + z2 / (4 * nn * nn)).squareRoot()
        let denom = 1 + z2 / nn
        return (max(0, (centre - half) / denom), min(1, (centre + half) / denom))
    }

    /// McNemar's exact test: with `b` items that only A got right and `c` that only B got right,
    /// the two-sided binomial p-value of min(b, c) under Binomial(b + c, 1/2), as
    /// `scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue` (1 when nothing flipped).
    public static func mcnemarExact(onlyA b: Int, onlyB c: Int) -> Double {
        let n = b + c
        guard n > 0 else { return 1 }
        let k = min(b, c)
        // P(X <= k) for X ~ Bin(n, 1/2), summed in log space so that n in the thousands is exact.
        var logTerms: [Double] = []
        for i in 0...k { logTerms.append(logChoose(n, i) - Double(n) * M_LN2) }
        let m = logTerms.max()!
        let cdf = exp(m) * logTerms.reduce(0) { $0 + exp($1 - m) }
        // Symmetric distribution: the two tails are equal, except when k is the exact centre.
        if 2 * k == n { return 1 }
        return min(1, 2 * cdf)
    }

    /// log C(n, k) through lgamma.
    public static func logChoose(_ n: Int, _ k: Int) -> Double {
        lgamma(Double(n) + 1) - lgamma(Double(k) + 1) - lgamma(Double(n - k) + 1)
    }

    /// Unbiased pass@k estimator of Chen et al. 2021 (HumanEval paper, eq. 1):
    /// `1 - C(n - c, k) / C(n, k)` with n samples of which c passed, computed as their product form.
    public static func passAtK(n: Int, correct c: Int, k: Int) -> Double {
        precondition(k >= 1 && k <= n && c >= 0 && c <= n, "pass@k needs 1 <= k <= n, 0 <= c <= n")
        if c == 0 { return 0 }
        if n - c < k { return 1 }
        var prod = 1.0
        for i in (n - c + 1)...n { prod *= 1 - Double(k) / Double(i) }
        return 1 - prod
    }

    /// Linear-interpolated quantile of sorted values (numpy's default, `method="linear"`).
    public static func quantile(sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty)
        let pos = q * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }

    /// Paired bootstrap percentile interval of mean(b) − mean(a): resample item indices with
    /// replacement (the same indices for both arms, which is what makes it paired), `resamples`
    /// times, from a seeded generator so that a report is reproducible.
    public static func pairedBootstrap(a: [Double], b: [Double], resamples: Int = 10_000,
                                       seed: UInt64 = 0, level: Double = 0.95) -> (low: Double, high: Double) {
        precondition(a.count == b.count, "paired bootstrap needs the same items in both arms")
        let n = a.count
        guard n > 0 else { return (0, 0) }
        let d = zip(a, b).map { $1 - $0 }
        var rng = SplitMix64(seed: seed)
        var means = [Double](repeating: 0, count: resamples)
        for r in 0..<resamples {
            var s = 0.0
            for _ in 0..<n { s += d[Int(rng.next(below: UInt64(n)))] }
            means[r] = s / Double(n)
        }
        means.sort()
        let alpha = (1 - level) / 2
        return (quantile(sorted: means, alpha), quantile(sorted: means, 1 - alpha))
    }

    /// Holm–Bonferroni step-down adjusted p-values (Holm 1979), in the input order, as
    /// `statsmodels.stats.multitest.multipletests(p, method="holm")[1]` returns them.
    public static func holm(_ p: [Double]) -> [Double] {
        let m = p.count
        let order = p.indices.sorted { p[$0] < p[$1] || (p[$0] == p[$1] && $0 < $1) }
        var adjusted = [Double](repeating: 0, count: m)
        var running = 0.0
        for (rank, i) in order.enumerated() {
            running = max(running, min(1, Double(m - rank) * p[i]))
            adjusted[i] = running
        }
        return adjusted
    }
}

extension SplitMix64 {
    /// Uniform in 0..<bound without modulo bias (Lemire's rejection on the low product).
    public mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        while true {
            let r = next()
            let (hi, lo) = r.multipliedFullWidth(by: bound)
            if lo >= (0 &- bound) % bound { return hi }
        }
    }
}

extension Array {
    /// Fisher–Yates shuffle with the project's seeded generator (the split files depend on it).
    public func seededShuffle(seed: UInt64) -> [Element] {
        var a = self
        var rng = SplitMix64(seed: seed)
        if a.count > 1 {
            for i in stride(from: a.count - 1, to: 0, by: -1) {
                let j = Int(rng.next(below: UInt64(i + 1)))
                a.swapAt(i, j)
            }
        }
        return a
    }
}
