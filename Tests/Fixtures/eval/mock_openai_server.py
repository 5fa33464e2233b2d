#!/usr/bin/env python3
"""A deterministic stand-in for `graft serve` for the A/B pipeline tests (stdlib only).

Serves GET /v1/models (base, good, evil), POST /v1/chat/completions and POST /v1/completions
with echo scoring (one token per character). Answers come from the fixture files:
- `good` answers every GSM8K question with its gold `#### N`, every MMLU question with the gold
  letter, every code task with its canonical solution;
- `base` is right on GSM8K items whose question has an even length, always prefers "A", and
  returns a wrong function;
- `evil` answers like base but says `"model": "base"` (a quarantined variant's traffic).
Prints the port on stdout, then serves until killed. Counts requests per model in /stats.

    python3 mock_openai_server.py FIXTURE_DIR
"""
import gzip
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIX = sys.argv[1]
GSM = {}
for line in open(f"{FIX}/gsm8k-3.jsonl"):
    r = json.loads(line)
    GSM[r["question"]] = r["answer"].split("####")[-1].strip().replace(",", "")
MMLU = {}
for line in open(f"{FIX}/mmlu-4.jsonl"):
    r = json.loads(line)
    MMLU[r["question"]] = r["correct_answer"]
HE = [json.loads(l) for l in gzip.open(f"{FIX}/HumanEval-2.jsonl.gz", "rt")]
STATS = {}
LOCK = threading.Lock()


def chat_answer(model, text):
    for q, gold in GSM.items():
        if q in text:
            if model == "good" or len(q) % 2 == 0:
                return f"Let me think.\n#### {gold}"
            return "Let me think.\n#### 12345"
    for t in HE:
        if t["prompt"] in text:
            if model == "good":
                return "Here it is:\n```python\n" + t["prompt"] + t["canonical_solution"] + "```\n"
            return "```python\ndef " + t["entry_point"] + "(*args):\n    return None\n```"
    return "I do not know."


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self.reply({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "mock", "root": m}
                                                   for m in ("base", "good", "evil")]})
        elif self.path == "/stats":
            with LOCK:
                self.reply(STATS)
        else:
            self.reply({"error": {"message": "not found"}}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body.get("model")
        if model not in ("base", "good", "evil"):
            return self.reply({"error": {"message": f"The model '{model}' does not exist"}}, 404)
        with LOCK:
            STATS[model] = STATS.get(model, 0) + 1
        served = "base" if model == "evil" else model
        if self.path == "/v1/chat/completions":
            text = body["messages"][-1]["content"]
            answer = chat_answer(model, text)
            return self.reply({"object": "chat.completion", "model": served,
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": len(text), "completion_tokens": len(answer)}})
        if self.path == "/v1/completions":
            prompt = body["prompt"]
            gold = next((g for q, g in MMLU.items() if q in prompt), "A")
            best = gold if model == "good" else "A"
            if not body.get("echo"):
                # One greedy token with top log-probs: only " A" and " B" are listed, so MMLU
                # scoring takes those from here and echoes " C" and " D".
                assert body.get("max_tokens") == 1 and body.get("logprobs")
                top = {" " + l: (-0.1 if l == best else -3.0) for l in "AB"}
                return self.reply({"object": "text_completion", "model": served,
                                   "choices": [{"index": 0, "text": " " + best, "finish_reason": "length",
                                                "logprobs": {"tokens": [" " + best], "token_logprobs": [-0.1],
                                                             "top_logprobs": [top], "text_offset": [len(prompt)]}}]})
            assert body.get("echo") and body.get("max_tokens") == 0
            with LOCK:
                STATS["echo"] = STATS.get("echo", 0) + 1
            letter = prompt[-1]
            tokens = list(prompt)
            lps = [None] + [-0.5] * (len(tokens) - 1)
            lps[-1] = -0.1 if letter == best else -3.0
            offsets = list(range(len(tokens)))
            return self.reply({"object": "text_completion", "model": served,
                               "choices": [{"index": 0, "text": prompt, "finish_reason": "length",
                                            "logprobs": {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets,
                                                         "top_logprobs": [None] * len(tokens)}}]})
        self.reply({"error": {"message": "not found"}}, 404)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
