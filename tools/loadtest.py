#!/usr/bin/env python3
"""Load benchmark for `graft serve` (a benchmark, not a test; issue 5).

Starts the server on loopback, drives it with C concurrent streaming clients (asyncio, raw
HTTP/1.1 keep-alive, no third-party packages), each sending R sequential /v1/completions
requests of a fixed prompt and exactly M generated tokens (ignore_eos, greedy), at each C in
--concurrency. Reports requests/s, tokens/s, p50/p99 time to first token and per-token
latency, failed requests, and the ratio of served tokens/s to the engine's own batched decode
at the same batch size, measured alone (no HTTP) by `graft serve --engine-benchmark` after the
server has stopped (the two never share the cores).

    tools/loadtest.py --graft .build/release/graft --model models/smollm2-135m-instruct
"""
import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def stream_request(reader, writer, host, port, body):
    data = json.dumps(body).encode()
    writer.write(f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    await writer.drain()
    t0 = time.perf_counter()
    status = int((await reader.readline()).split()[1])
    headers = {}
    while True:
        line = (await reader.readline()).decode().strip()
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    times = []   # arrival time of each generated token
    if status != 200:
        n = int(headers.get("content-length", "0"))
        await reader.readexactly(n)
        return status, t0, times
    buf = b""
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            break
        buf += await reader.readexactly(size)
        await reader.readline()
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            payload = event[len(b"data: "):]
            if payload == b"[DONE]":
                continue
            obj = json.loads(payload)
            for choice in obj.get("choices", []):
                now = time.perf_counter()
                times.extend([now] * len(choice.get("token_ids") or []))
    return status, t0, times


async def worker(host, port, body, count, results):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            try:
                status, t0, times = await stream_request(reader, writer, host, port, body)
            except Exception as e:  # a failed request counts, the run goes on
                results.append({"status": repr(e), "t0": time.perf_counter(), "times": []})
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            results.append({"status": status, "t0": t0, "times": times})
    finally:
        writer.close()


async def run_level(host, port, concurrency, per_stream, body):
    results = []
    start = time.perf_counter()
    await asyncio.gather(*(worker(host, port, body, per_stream, results) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ok = [r for r in results if r["status"] == 200 and len(r["times"]) == body["max_tokens"]]
    tokens = sum(len(r["times"]) for r in results)
    ttft = [r["times"][0] - r["t0"] for r in ok]
    gaps = [b - a for r in ok for a, b in zip(r["times"], r["times"][1:])]
    # Steady state: from when every stream has its first token to when the first stream ends.
    firsts = [r["times"][0] for r in ok]
    lasts = [r["times"][-1] for r in ok]
    steady = None
    if concurrency > 1 and ok:
        by_worker_start = sorted(firsts)[concurrency - 1] if len(firsts) >= concurrency else None
        window_end = sorted(lasts)[-concurrency] if len(lasts) >= concurrency else None
        if by_worker_start and window_end and window_end > by_worker_start:
            n = sum(1 for r in ok for t in r["times"] if by_worker_start <= t <= window_end)
            steady = n / (window_end - by_worker_start)
    return {
        "concurrency": concurrency, "requests": len(results), "failed": len(results) - len(ok),
        "wall_s": round(wall, 3), "requests_per_s": round(len(ok) / wall, 3), "tokens_per_s": round(tokens / wall, 1),
        "steady_tokens_per_s": round(steady, 1) if steady else None,
        "ttft_p50_ms": round(pct(ttft, 50) * 1000, 1), "ttft_p99_ms": round(pct(ttft, 99) * 1000, 1),
        "tpot_p50_ms": round(pct(gaps, 50) * 1000, 2), "tpot_p99_ms": round(pct(gaps, 99) * 1000, 2),
    }


def wait_healthy(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise SystemExit("server did not come up")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graft", default=".build/release/graft")
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--port", type=int, default=18123)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests-per-stream", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="Write a short story about a robot who learns to paint. Once upon a time,")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--activations", choices=["f32", "bf16"], default="f32",
                    help="serve --activations (and the engine-alone measurement's)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    host = "127.0.0.1"
    url = f"http://{host}:{args.port}"
    cmd = [args.graft, "serve", "--model", args.model, "--host", host, "--port", str(args.port),
           "--max-batch", str(max(levels)), "--quiet", "--activations", args.activations]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url)
        body = {"model": "base", "prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0,
                "stream": True, "ignore_eos": True, "return_token_ids": True}
        asyncio.run(run_level(host, args.port, 1, 1, dict(body, max_tokens=4)))  # warm-up
        rows = []
        for c in levels:
            row = asyncio.run(run_level(host, args.port, c, args.requests_per_stream, body))
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    engine_cmd = [args.graft, "serve", "--model", args.model, "--engine-benchmark", ",".join(map(str, levels)),
                  "--activations", args.activations]
    if args.threads:
        engine_cmd += ["--threads", str(args.threads)]
    alone = json.loads(subprocess.check_output(engine_cmd, stderr=subprocess.DEVNULL))
    print(f"\nengine alone (batched decode, tokens/s): {alone}")
    print(f"\n{'streams':>7} {'req/s':>7} {'tok/s':>8} {'steady':>8} {'alone':>8} {'ratio':>6} {'steady':>6} "
          f"{'ttft p50':>9} {'p99':>8} {'tpot p50':>9} {'p99':>7} {'failed':>6}")
    for r in rows:
        a = alone.get(str(r["concurrency"]))
        r["engine_alone_tokens_per_s"] = a
        r["ratio"] = round(r["tokens_per_s"] / a, 3) if a else None
        r["steady_ratio"] = round(r["steady_tokens_per_s"] / a, 3) if a and r["steady_tokens_per_s"] else None
        print(f"{r['concurrency']:>7} {r['requests_per_s']:>7.2f} {r['tokens_per_s']:>8.1f} "
              f"{(r['steady_tokens_per_s'] or float('nan')):>8.1f} {a:>8.1f} {r['ratio']:>6.2f} "
              f"{(r['steady_ratio'] or float('nan')):>6.2f} {r['ttft_p50_ms']:>7.1f}ms {r['ttft_p99_ms']:>6.1f}ms "
              f"{r['tpot_p50_ms']:>7.2f}ms {r['tpot_p99_ms']:>5.1f}ms {r['failed']:>6}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "max_tokens": args.max_tokens, "rows": rows, "engine_alone": alone}, f, indent=2)


if __name__ == "__main__":
    main()
