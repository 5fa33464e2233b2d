#!/usr/bin/env python3
"""Drives a running `graft serve` with the official `openai` Python client (pinned in
tools/setup-system), unchanged: completions, chat, streaming, token-id prompts, echo scoring,
errors. Usage: openai_client_test.py BASE_URL  (e.g. http://127.0.0.1:8080/v1). Exit 0 = all good."""
import sys

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


models = client.models.list()
check("models lists base", [m.id for m in models.data][:1] == ["base"], models)

c = client.completions.create(model="base", prompt="hello", max_tokens=8, temperature=0)
check("completion text", isinstance(c.choices[0].text, str) and c.choices[0].finish_reason in ("stop", "length"), c)
check("completion usage", c.usage.prompt_tokens > 0 and c.usage.completion_tokens == len(c.choices[0].text.encode()) or c.usage.completion_tokens > 0, c.usage)

ids = client.completions.create(model="base", prompt=[1, 2, 3, 4], max_tokens=5, temperature=0)
check("token-id prompt", ids.usage.prompt_tokens == 4, ids.usage)

parts = []
finish = None
for chunk in client.completions.create(model="base", prompt="hello", max_tokens=8, temperature=0, stream=True):
    parts.append(chunk.choices[0].text)
    finish = chunk.choices[0].finish_reason or finish
check("streamed completion equals the whole", "".join(parts) == c.choices[0].text, (parts, c.choices[0].text))
check("stream finish reason", finish == c.choices[0].finish_reason, finish)

chat = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
                                      temperature=0, logprobs=True, top_logprobs=2)
check("chat message", chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str), chat)
check("chat logprobs", chat.choices[0].logprobs is not None and all(len(t.top_logprobs) == 2 for t in chat.choices[0].logprobs.content), chat.choices[0].logprobs)

deltas = []
usage = None
for chunk in client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
                                            temperature=0, stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage
    for ch in chunk.choices:
        deltas.append(ch.delta.content or "")
check("streamed chat equals the whole", "".join(deltas) == chat.choices[0].message.content, (deltas, chat.choices[0].message.content))
check("stream usage", usage is not None and usage.completion_tokens == chat.usage.completion_tokens, usage)

several = client.completions.create(model="base", prompt="ab", max_tokens=4, n=3, temperature=1.0, seed=7)
check("n choices", sorted(ch.index for ch in several.choices) == [0, 1, 2], several)

score = client.completions.create(model="base", prompt=[5, 6, 7, 8], max_tokens=0, echo=True, logprobs=1, temperature=0)
lp = score.choices[0].logprobs
check("echo scoring", lp.token_logprobs[0] is None and len(lp.token_logprobs) == 4 and all(x <= 0 for x in lp.token_logprobs[1:]), lp)

try:
    client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    check("unknown model is 404", False, "no error")
except openai.NotFoundError as e:
    check("unknown model is 404", e.status_code == 404 and e.body is not None, e)

try:
    client.completions.create(model="base", prompt="x", max_tokens=-5)
    check("bad field is 400", False, "no error")
except openai.BadRequestError as e:
    check("bad field is 400", e.status_code == 400, e)

print(f"{len(failures)} failures" if failures else "all openai client checks passed")
sys.exit(1 if failures else 0)
