#!/usr/bin/env python3
"""Traced-forward references for the plugin ABI's model_forward, made by `transformers`.

For the tiny fixture models (Tests/Fixtures/models/<name>, made by gen_model_fixtures.py) runs
one sequence in f32 with eager attention and writes Tests/Fixtures/traces/<name>.safetensors:

  tokens                  i32 [T]
  logits                  f32 [T, vocab]
  residual_pre_attention  f32 [L, T, d]      output_hidden_states[l] (the input of layer l)
  residual_pre_ffn        f32 [L, T, d]      input of post_attention_layernorm (x + attention)
  final_hidden            f32 [T, d]         input of model.norm
  ffn_coefficients        f32 [L, T, f]      input of mlp.down_proj
  attention_mix           f32 [L, T, H*h]    input of self_attn.o_proj
  attention_weights       f32 [L, H, T, T]   output_attentions

Versions are in each file's metadata.

    python3 tools/gen_trace_fixtures.py
"""
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "Tests", "Fixtures", "models")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "traces")
TOKENS = [1, 17, 42, 99, 5, 200, 3, 64, 77]


def trace(name):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(MODELS, name), dtype=torch.float32, attn_implementation="eager").eval()
    layers = model.model.layers
    captured = {"pre_ffn": {}, "coef": {}, "mix": {}}
    hooks = []

    def pre_hook(store, index):
        def hook(_module, args):
            store[index] = args[0].detach().clone()
        return hook

    for i, layer in enumerate(layers):
        hooks.append(layer.post_attention_layernorm.register_forward_pre_hook(pre_hook(captured["pre_ffn"], i)))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(pre_hook(captured["coef"], i)))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(pre_hook(captured["mix"], i)))
    final = {}
    hooks.append(model.model.norm.register_forward_pre_hook(pre_hook(final, 0)))
    ids = torch.tensor([TOKENS])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_attentions=True, use_cache=False)
    for h in hooks:
        h.remove()
    L = len(layers)
    tensors = {
        "tokens": torch.tensor(TOKENS, dtype=torch.int32),
        "logits": out.logits[0].float().contiguous(),
        "residual_pre_attention": torch.stack([out.hidden_states[l][0] for l in range(L)]).contiguous(),
        "residual_pre_ffn": torch.stack([captured["pre_ffn"][l][0] for l in range(L)]).contiguous(),
        "final_hidden": final[0][0].contiguous(),
        "ffn_coefficients": torch.stack([captured["coef"][l][0] for l in range(L)]).contiguous(),
        "attention_mix": torch.stack([captured["mix"][l][0] for l in range(L)]).contiguous(),
        "attention_weights": torch.stack([out.attentions[l][0] for l in range(L)]).contiguous(),
    }
    meta = {"transformers": transformers.__version__, "torch": torch.__version__,
            "python": sys.version.split()[0], "generator": "tools/gen_trace_fixtures.py", "model": name}
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, name + ".safetensors"), metadata=meta)
    print(name, {k: list(v.shape) for k, v in tensors.items()})


def main():
    for name in ("llama-tiny-f32", "qwen2-tiny-f32"):
        trace(name)


if __name__ == "__main__":
    main()
