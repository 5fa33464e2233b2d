#!/usr/bin/env python3
"""Tiny random Llama and Qwen2 models made by `transformers`, with reference logits.

Writes Tests/Fixtures/models/<name>/ = a Hugging Face folder (config.json, model.safetensors)
plus expected.safetensors: for each prompt i, `tokens.i` (i32: prompt + greedy continuation)
and `logits.i` (f32 [len, vocab]: transformers' logits of the whole sequence, computed in f32
on the stored weights). A causal model's logits at position t depend only on tokens ≤ t, so
the same rows check prefill, decode steps and chunked prompts. `prompt_lengths` in the
metadata splits prompt from continuation. Versions are recorded in the metadata and in
Tests/Fixtures/models/VERSIONS.json.

    python3 tools/gen_model_fixtures.py
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "models")
PROMPTS = [[1, 17, 42, 99, 5], [1, 200, 3, 3, 3, 64, 77, 150, 12], [7, 250, 11]]
NEW_TOKENS = 8


def make(name, cls, cfg_cls, dtype, seed, **cfg):
    torch.manual_seed(seed)
    config = cfg_cls(**cfg)
    model = cls(config).eval()
    # Random init is small; widen the weights so the logits are not all near zero.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    # Reference: f32 compute on the stored (possibly bf16-rounded) weights.
    ref = cls.from_pretrained(folder, torch_dtype=torch.float32).eval()
    tensors, lengths = {}, []
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = ref.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                               attention_mask=torch.ones_like(ids), pad_token_id=0)
            logits = ref(out).logits[0]
        tensors[f"tokens.{i}"] = out[0].to(torch.int32).contiguous()
        tensors[f"logits.{i}"] = logits.float().contiguous()
        lengths.append(len(prompt))
    meta = {"prompt_lengths": json.dumps(lengths), "transformers": transformers.__version__,
            "torch": torch.__version__, "generator": "tools/gen_model_fixtures.py",
            "weights_dtype": str(dtype).replace("torch.", "")}
    save_file(tensors, os.path.join(folder, "expected.safetensors"), metadata=meta)
    for extra in ("generation_config.json",):
        p = os.path.join(folder, extra)
        if os.path.exists(p):
            os.remove(p)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} params, {dtype}")


def main():
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    L, LC = transformers.LlamaForCausalLM, transformers.LlamaConfig
    Q, QC = transformers.Qwen2ForCausalLM, transformers.Qwen2Config
    make("llama-tiny-f32", L, LC, torch.float32, 1, rope_theta=10000.0, tie_word_embeddings=False, **common)
    make("llama-tiny-bf16", L, LC, torch.bfloat16, 2, rope_theta=10000.0, tie_word_embeddings=True, **common)
    make("llama3-tiny-f16", L, LC, torch.float16, 3, tie_word_embeddings=False,
         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
         rope_theta=500000.0, **common)
    make("qwen2-tiny-f32", Q, QC, torch.float32, 4, rope_theta=1000000.0, tie_word_embeddings=True, **common)
    make("qwen2-tiny-bf16", Q, QC, torch.bfloat16, 5, rope_theta=1000000.0, tie_word_embeddings=False, **common)
    import safetensors
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "safetensors": safetensors.__version__, "python": sys.version.split()[0],
                   "script": "tools/gen_model_fixtures.py"}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
