#!/usr/bin/env python3
"""Variant fixtures: a tiny model's logits after transformers changed its weights to W + Δ.

For each base model in Tests/Fixtures/models (llama-tiny-f32, qwen2-tiny-bf16) it writes
Tests/Fixtures/variants/<base>/:
  - delta-a.safetensors: dense (layer 0 up_proj), row-sparse (layer 1 down_proj), column-sparse
    (layer 0 o_proj) and low-rank (layer 1 v_proj, layer 0 q_proj) entries in DESIGN.md's
    layout (`<target>.dense`, `.rows`/`.row_values`, `.cols`/`.col_values`, `.lora_a`/`.lora_b`,
    the scale in __metadata__ `lora_scale`);
  - delta-b.safetensors: a second, row-sparse-only delta (layers 0 and 1 up_proj);
  - delta-c.safetensors: what a full fine-tune also touches: dense 1-D entries on norm weights
    (layer 0 input_layernorm, layer 1 post_attention_layernorm, model.norm) and, for Qwen2, the
    layer 0 q/k/v biases; row-sparse and low-rank entries on the embedding; row-sparse and
    low-rank entries on the (untied) lm head;
  - expected.safetensors: `logits.<delta>.<i>` = transformers' f32 logits of prompt i on the
    model whose weights are the stored weights (widened to f32) plus the densified delta;
    `logits_bf16.<delta>.<i>` the same with the delta's 2-D values (rows, columns, dense
    matrices, LoRA factors) rounded to bf16 first, as a variant holding them in bf16 sees them
    (1-D entries stay f32: a variant merges them into f32 copies).
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


def deltas_c(model, g):
    sd = model.state_dict()
    entries, dense = {}, {}
    vectors = ["model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight", "model.norm.weight"]
    vectors += [t for t in ("model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias",
                            "model.layers.0.self_attn.v_proj.bias") if t in sd]
    for t in vectors:
        d = torch.randn(sd[t].shape, generator=g) * 0.1
        entries[t + ".dense"] = d
        dense[t] = d
    for t in ["model.embed_tokens.weight", "lm_head.weight"]:
        out, inp = sd[t].shape
        rows = torch.tensor([1, 3, 17, 42, 81, 200], dtype=torch.int32)
        vals = torch.randn(len(rows), inp, generator=g) * 0.2
        entries[t + ".rows"], entries[t + ".row_values"] = rows, vals
        a = torch.randn(2, inp, generator=g) * 0.2
        b = torch.randn(out, 2, generator=g) * 0.2
        entries[t + ".lora_a"], entries[t + ".lora_b"] = a, b
        dense[t] = (rows, vals, a, b)
    return entries, dense


def rounded_dense(entries, t, d, rnd):
    """The dense Δ of target t, the stored 2-D values passed through rnd first."""
    if isinstance(d, tuple):  # delta-c's embedding and lm head: rows + low-rank
        rows, vals, a, b = d
        full = torch.zeros(b.shape[0], a.shape[1])
        full[rows.long()] = rnd(vals)
        return full + SCALE * (rnd(b) @ rnd(a))
    if d.dim() == 1:  # 1-D entries are kept in f32
        return d
    if t + ".dense" in entries:
        return rnd(entries[t + ".dense"])
    if t + ".rows" in entries:
        full = torch.zeros(d.shape)
        full[entries[t + ".rows"].long()] = rnd(entries[t + ".row_values"])
        return full
    if t + ".cols" in entries:
        full = torch.zeros(d.shape)
        full[:, entries[t + ".cols"].long()] = rnd(entries[t + ".col_values"])
        return full
    return SCALE * (rnd(entries[t + ".lora_b"]) @ rnd(entries[t + ".lora_a"]))


def bf16(x):
    return x.to(torch.bfloat16).float()


def main():
    meta_versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                     "generator": "tools/gen_variant_fixtures.py"}
    for base in ["llama-tiny-f32", "qwen2-tiny-bf16"]:
        src = os.path.join(ROOT, "models", base)
        out_dir = os.path.join(ROOT, "variants", base)
        os.makedirs(out_dir, exist_ok=True)
        g = torch.Generator().manual_seed(11)
        expected = {}
        for name, make in [("delta-a", deltas_a), ("delta-b", deltas_b), ("delta-c", deltas_c)]:
            model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
            entries, dense = make(model, g)
            meta = {"format": "graft-delta", "format_version": "1", "strategy": "fixture",
                    "lora_scale": str(SCALE), "base": base, **meta_versions}
            save_file({k: v.contiguous() for k, v in entries.items()}, os.path.join(out_dir, name + ".safetensors"), metadata=meta)
            for key, rnd in [("logits", lambda x: x), ("logits_bf16", bf16)]:
                model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
                with torch.no_grad():
                    sd = model.state_dict()
                    for t in dense:
                        sd[t].add_(rounded_dense(entries, t, dense[t], rnd))
                    for i, p in enumerate(PROMPTS):
                        expected[f"{key}.{name}.{i}"] = model(torch.tensor([p])).logits[0].float().contiguous()
        for i, p in enumerate(PROMPTS):
            expected[f"tokens.{i}"] = torch.tensor(p, dtype=torch.int32)
        save_file(expected, os.path.join(out_dir, "expected.safetensors"), metadata={"prompts": json.dumps(PROMPTS), **meta_versions})
        print(base, "ok")


if __name__ == "__main__":
    main()
