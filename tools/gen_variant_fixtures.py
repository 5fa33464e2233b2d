#!/usr/bin/env python3
"""Variant fixtures: a tiny model's logits after transformers changed its weights to W + Δ.

For each base model in Tests/Fixtures/models (llama-tiny-f32, qwen2-tiny-bf16) it writes
Tests/Fixtures/variants/<base>/:
  - delta-a.safetensors: dense (layer 0 up_proj), row-sparse (layer 1 down_proj), column-sparse
    (layer 0 o_proj) and low-rank (layer 1 v_proj, layer 0 q_proj) entries in DESIGN.md's
    layout (`<target>.dense`, `.rows`/`.row_values`, `.cols`/`.col_values`, `.lora_a`/`.lora_b`,
    the scale in __metadata__ `lora_scale`);
  - delta-b.safetensors: a second, row-sparse-only delta (layers 0 and 1 up_proj);
  - expected.safetensors: `logits.<delta>.<i>` = transformers' f32 logits of prompt i on the
    model whose weights are the stored weights (widened to f32) plus the densified delta.
Versions are recorded in the metadata.

    python3 tools/gen_variant_fixtures.py
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures")
PROMPTS = [[1, 17, 42, 99, 5, 8, 200], [3, 9, 27, 81, 243, 100, 50, 25, 12, 6, 3]]
SCALE = 0.5


def deltas_a(model, g):
    sd = model.state_dict()
    entries, dense = {}, {}
    t = "model.layers.0.mlp.up_proj.weight"
    d = torch.randn(sd[t].shape, generator=g) * 0.05
    entries[t + ".dense"] = d
    dense[t] = d
    t = "model.layers.1.mlp.down_proj.weight"
    out, inp = sd[t].shape
    rows = torch.tensor([0, 5, 17, out - 1], dtype=torch.int32)
    vals = torch.randn(len(rows), inp, generator=g) * 0.1
    entries[t + ".rows"], entries[t + ".row_values"] = rows, vals
    full = torch.zeros(out, inp)
    full[rows.long()] = vals
    dense[t] = full
    t = "model.layers.0.self_attn.o_proj.weight"
    out, inp = sd[t].shape
    cols = torch.tensor([1, 2, 30, inp - 1], dtype=torch.int32)
    vals = torch.randn(out, len(cols), generator=g) * 0.1
    entries[t + ".cols"], entries[t + ".col_values"] = cols, vals
    full = torch.zeros(out, inp)
    full[:, cols.long()] = vals
    dense[t] = full
    for t in ["model.layers.1.self_attn.v_proj.weight", "model.layers.0.self_attn.q_proj.weight"]:
        out, inp = sd[t].shape
        a = torch.randn(4, inp, generator=g) * 0.2
        b = torch.randn(out, 4, generator=g) * 0.2
        entries[t + ".lora_a"], entries[t + ".lora_b"] = a, b
        dense[t] = SCALE * (b @ a)
    return entries, dense


def deltas_b(model, g):
    sd = model.state_dict()
    entries, dense = {}, {}
    for layer in (0, 1):
        t = f"model.layers.{layer}.mlp.up_proj.weight"
        out, inp = sd[t].shape
        rows = torch.tensor([3, 4, 100 + layer], dtype=torch.int32)
        vals = torch.randn(len(rows), inp, generator=g) * 0.2
        entries[t + ".rows"], entries[t + ".row_values"] = rows, vals
        full = torch.zeros(out, inp)
        full[rows.long()] = vals
        dense[t] = full
    return entries, dense


def main():
    meta_versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                     "generator": "tools/gen_variant_fixtures.py"}
    for base in ["llama-tiny-f32", "qwen2-tiny-bf16"]:
        src = os.path.join(ROOT, "models", base)
        out_dir = os.path.join(ROOT, "variants", base)
        os.makedirs(out_dir, exist_ok=True)
        g = torch.Generator().manual_seed(11)
        expected = {}
        for name, make in [("delta-a", deltas_a), ("delta-b", deltas_b)]:
            model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
            entries, dense = make(model, g)
            meta = {"format": "graft-delta", "format_version": "1", "strategy": "fixture",
                    "lora_scale": str(SCALE), "base": base, **meta_versions}
            save_file({k: v.contiguous() for k, v in entries.items()}, os.path.join(out_dir, name + ".safetensors"), metadata=meta)
            with torch.no_grad():
                sd = model.state_dict()
                for t, d in dense.items():
                    sd[t].add_(d)
                for i, p in enumerate(PROMPTS):
                    expected[f"logits.{name}.{i}"] = model(torch.tensor([p])).logits[0].float().contiguous()
        for i, p in enumerate(PROMPTS):
            expected[f"tokens.{i}"] = torch.tensor(p, dtype=torch.int32)
        save_file(expected, os.path.join(out_dir, "expected.safetensors"), metadata={"prompts": json.dumps(PROMPTS), **meta_versions})
        print(base, "ok")


if __name__ == "__main__":
    main()
