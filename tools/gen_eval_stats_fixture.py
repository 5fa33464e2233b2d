#!/usr/bin/env python3
"""Reference values for Sources/Evaluation/Statistics.swift, computed with scipy.

Writes Tests/Fixtures/eval/statistics.json: Wilson intervals and exact binomial (McNemar) p-values
from scipy.stats.binomtest, unbiased pass@k from scipy.special.comb, Holm adjustments (written out
here, statsmodels is not installed), and paired bootstrap intervals from scipy.stats.bootstrap
(a different generator, so the Swift test compares them with a Monte Carlo tolerance) next to an
exact replay of the Swift SplitMix64 bootstrap.

    python3 tools/gen_eval_stats_fixture.py
"""
import json
import os

import numpy as np
import scipy
from scipy import special, stats

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, bound):
        while True:
            r = self.next()
            prod = r * bound
            hi, lo = prod >> 64, prod & MASK
            if lo >= ((1 << 64) - bound) % bound:
                return hi


def replay_bootstrap(a, b, resamples, seed):
    d = [y - x for x, y in zip(a, b)]
    rng = SplitMix64(seed)
    n = len(d)
    means = []
    for _ in range(resamples):
        s = 0.0
        for _ in range(n):
            s += d[rng.below(n)]
        means.append(s / n)
    means = np.sort(np.array(means))
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def holm(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def main():
    wilson = []
    for k, n in [(0, 10), (10, 10), (5, 10), (1, 3), (37, 100), (612, 1319), (7000, 14042), (1, 1)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        wilson.append({"k": k, "n": n, "low": ci.low, "high": ci.high})
    mcnemar = []
    for b, c in [(0, 0), (1, 0), (0, 5), (3, 7), (10, 10), (12, 30), (150, 190), (400, 520), (1, 2)]:
        p = 1.0 if b + c == 0 else stats.binomtest(min(b, c), b + c, 0.5).pvalue
        mcnemar.append({"b": b, "c": c, "p": p})
    passk = []
    for n, c, k in [(10, 0, 1), (10, 3, 1), (10, 3, 5), (10, 10, 10), (20, 1, 10), (200, 13, 100), (5, 4, 2)]:
        passk.append({"n": n, "c": c, "k": k, "value": 1.0 - special.comb(n - c, k, exact=True) / special.comb(n, k, exact=True)})
    rs = np.random.RandomState(8)
    boot = []
    for n, pa, pb, seed in [(60, 0.4, 0.55, 1), (200, 0.3, 0.35, 2), (120, 0.5, 0.5, 3)]:
        a = (rs.rand(n) < pa).astype(float).tolist()
        b = (rs.rand(n) < pb).astype(float).tolist()
        res = stats.bootstrap((np.array(a), np.array(b)), lambda x, y, axis=-1: np.mean(y - x, axis=axis),
                              paired=True, vectorized=True, n_resamples=20000, method="percentile",
                              random_state=np.random.RandomState(seed))
        boot.append({"a": a, "b": b, "seed": seed, "resamples": 2000,
                     "scipy_low": float(res.confidence_interval.low), "scipy_high": float(res.confidence_interval.high),
                     "replay": replay_bootstrap(a, b, 2000, seed)})
    holm_cases = [[0.01, 0.04, 0.03, 0.2], [0.5], [0.001, 0.001, 0.9], [0.04, 0.01]]
    quantiles = {"values": [3.0, 1.0, 4.0, 1.5, 9.0, 2.6], "q": [0.0, 0.025, 0.5, 0.975, 1.0],
                 "expected": [float(np.quantile([3.0, 1.0, 4.0, 1.5, 9.0, 2.6], q)) for q in [0.0, 0.025, 0.5, 0.975, 1.0]]}
    shuffle = {"seed": 42, "n": 10}
    r = SplitMix64(42)
    a = list(range(10))
    for i in range(9, 0, -1):
        j = r.below(i + 1)
        a[i], a[j] = a[j], a[i]
    shuffle["expected"] = a
    out = {"made_by": "tools/gen_eval_stats_fixture.py", "scipy": scipy.__version__, "numpy": np.__version__,
           "wilson": wilson, "mcnemar": mcnemar, "pass_at_k": passk, "bootstrap": boot,
           "holm": [{"p": p, "adjusted": holm(p)} for p in holm_cases], "quantile": quantiles, "shuffle": shuffle}
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "eval", "statistics.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
