#!/usr/bin/env python3
"""Reference for PluginKit's MLP and AdamW, made by torch.

Writes Tests/Fixtures/pluginkit/mlp_adamw.safetensors: an MLP [5, 8, 3] (nn.Linear layers,
SiLU between them) with its initial parameters (w0, b0, w1, b1), an input x [4, 5] and target
t [4, 3]; the loss mean((y − t)²), the gradients of the first step (grad.*), and the parameters
after 3 torch.optim.AdamW steps (lr 0.01, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1)
(step3.*). Versions are in the metadata.

    python3 tools/gen_pluginkit_fixtures.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "pluginkit")


def main():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.SiLU(), torch.nn.Linear(8, 3))
    x = torch.randn(4, 5)
    t = torch.randn(4, 3)
    names = ["w0", "b0", "w1", "b1"]
    params = [model[0].weight, model[0].bias, model[2].weight, model[2].bias]
    tensors = {n: p.detach().clone().contiguous() for n, p in zip(names, params)}
    tensors["x"] = x
    tensors["t"] = t
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    for step in range(3):
        opt.zero_grad()
        loss = ((model(x) - t) ** 2).mean()
        loss.backward()
        if step == 0:
            tensors["loss"] = loss.detach().reshape(1)
            for n, p in zip(names, params):
                tensors["grad." + n] = p.grad.detach().clone().contiguous()
        opt.step()
    for n, p in zip(names, params):
        tensors["step3." + n] = p.detach().clone().contiguous()
    os.makedirs(OUT, exist_ok=True)
    meta = {"torch": torch.__version__, "python": sys.version.split()[0], "generator": "tools/gen_pluginkit_fixtures.py"}
    save_file(tensors, os.path.join(OUT, "mlp_adamw.safetensors"), metadata=meta)
    print({k: list(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
