#!/usr/bin/env python3
"""Tokenizer throughput: `graft tokenize --bench` against the Hugging Face `tokenizers` package.

    swift build -c release --product graft
    python3 tools/bench_tokenizer.py [--graft .build/release/graft] [--repeats 5] [NAME ...]

NAME is a folder under Tests/Fixtures/tokenizers (default: smollm2 qwen2.5 llama2-sp); the input
is Tests/Fixtures/tokenizers/corpus.jsonl. Both sides encode every string without special
tokens, `repeats` times, with their word caches warm after the first pass; the figure is the
median. `tokenizers` is timed twice: one `encode` call per string on one thread (what graft
does), and `encode_batch` over the whole corpus (Rayon threads over all cores).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import tokenizers
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")


def timings(fn, repeats):
    """(first, median) wall seconds: the first pass runs with a cold word cache."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=["smollm2", "qwen2.5", "llama2-sp"])
    ap.add_argument("--graft", default=os.path.join(ROOT, ".build", "release", "graft"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    corpus_path = os.path.join(FIX, "corpus.jsonl")
    with open(corpus_path, encoding="utf-8") as f:
        corpus = [json.loads(l)["text"] for l in f if '"text"' in l]
    print(f"tokenizers {tokenizers.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} cores, {len(corpus)} strings, "
          f"{sum(len(s.encode()) for s in corpus)} bytes, median of {args.repeats}")
    print(f"{'tokenizer':<12} {'graft tok/s':>12} {'hf encode tok/s':>16} {'ratio':>6} "
          f"{'hf batch tok/s':>15} {'ratio':>6} | cold: {'graft':>10} {'hf encode':>10} {'ratio':>6}")
    for name in args.names:
        d = os.path.join(FIX, name)
        out = subprocess.run([args.graft, "tokenize", "--model", d, "--file", corpus_path, "--bench",
                              "--repeats", str(args.repeats)], check=True, capture_output=True, text=True)
        g = json.loads(out.stdout.strip().splitlines()[-1])
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        n = sum(len(e.ids) for e in tok.encode_batch(corpus, add_special_tokens=False))
        if n != g["tokens"]:
            print(f"  warning: {name}: graft counted {g['tokens']} tokens, tokenizers {n}")
        # A fresh tokenizer, so that its first pass is cold like graft's.
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        single0, single = timings(lambda: [tok.encode(s, add_special_tokens=False) for s in corpus], args.repeats)
        _, batch = timings(lambda: tok.encode_batch(corpus, add_special_tokens=False), args.repeats)
        gt = g["tokens_per_second"]
        g0 = int(n / g["seconds"][0])
        print(f"{name:<12} {gt:>12,} {int(n / single):>16,} {gt / (n / single):>6.2f} "
              f"{int(n / batch):>15,} {gt / (n / batch):>6.2f} |       {g0:>10,} {int(n / single0):>10,} "
              f"{g0 / (n / single0):>6.2f}")


if __name__ == "__main__":
    sys.exit(main())
