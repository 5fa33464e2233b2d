#!/usr/bin/env python3
"""Greedy 64-token continuations of the provisioned default model by `transformers`.

Runs SmolLM2-135M-Instruct from models/smollm2-135m-instruct (as tools/provision writes it) in
f32 on its stored bf16 weights, on chat-formatted prompts, and writes
Tests/Fixtures/default_model_greedy.json with the prompt ids, the greedy ids and the sha256 of
the model.safetensors they were made on, plus the library versions. The Swift test compares
token for token and is skipped when the model is not provisioned.

    python3 tools/gen_default_model_fixture.py [MODEL_DIR]

It also runs the prompts in transformers' own bf16 inference (torch_dtype=bfloat16) and records,
per prompt, the first token where that greedy continuation parts from the f32 one
(`bf16_inference_first_differing`): the yardstick of graft's `--activations bf16`
(DefaultModelTests.bf16ActivationsPartNoSoonerThanTransformersBF16).
"""
import hashlib
import json
import os
import sys

import tokenizers
import torch
import transformers

PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that returns the square of a number.",
    "Explain photosynthesis in one sentence.",
    "List three primary colors.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Give me a haiku about the sea.",
    "Who wrote Romeo and Juliet?",
    "def fibonacci(n):",
    "Summarize: The quick brown fox jumps over the lazy dog.",
    "Why is the sky blue?",
]
NEW_TOKENS = 64


def greedy(model, tok, text):
    messages = [{"role": "user", "content": text}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_token_id)
    return rendered, ids, out[0][len(ids):].tolist()


def main():
    root = os.path.join(os.path.dirname(__file__), "..")
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models", "smollm2-135m-instruct")
    h = hashlib.sha256()
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    cases = []
    for text in PROMPTS:
        rendered, ids, greedy_ids = greedy(model, tok, text)
        cases.append({"prompt": text, "rendered": rendered, "prompt_ids": ids, "greedy_ids": greedy_ids,
                      "greedy_text": tok.decode(greedy_ids)})
        print(f"{text[:40]!r}: {tok.decode(greedy_ids)[:60]!r}")
    bf16 = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16).eval()
    firsts = []
    for case in cases:
        ids = greedy(bf16, tok, case["prompt"])[2]
        firsts.append(next((i for i, (a, b) in enumerate(zip(ids, case["greedy_ids"])) if a != b), NEW_TOKENS))
    print(f"bf16 inference: first token differing from f32, per prompt: {firsts}")
    fixture = {"model": "smollm2-135m-instruct", "model_safetensors_sha256": h.hexdigest(),
               "new_tokens": NEW_TOKENS, "compute": "float32 on the stored bf16 weights, greedy, no EOS stop",
               "transformers": transformers.__version__, "torch": torch.__version__,
               "tokenizers": tokenizers.__version__, "generator": "tools/gen_default_model_fixture.py",
               "bf16_inference_first_differing": firsts, "cases": cases}
    with open(os.path.join(root, "Tests", "Fixtures", "default_model_greedy.json"), "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
