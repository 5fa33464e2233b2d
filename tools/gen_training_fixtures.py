#!/usr/bin/env python3
"""Reference gradients, distillation losses and AdamW trajectories for the training engine
(issue 7), computed by PyTorch autograd on the tiny fixture models of
tools/gen_model_fixtures.py (loaded in f32 from their stored weights).

Writes Tests/Fixtures/training/:
  grads-<model>.safetensors   one padded batch (right padding, attention mask, labels with -100
                              on prompts and padding); LoRA adapters (rank 4, alpha 8) on up,
                              down, v, o of every layer with random A and B; a dense delta on
                              layer 0 k_proj, a row-sparse one on layer 1 gate_proj, a
                              column-sparse one on layer 1 q_proj. Tensors: batch.*, loss,
                              grad.<param> for every parameter, lora.<name>.a/b and their
                              grad.lora.*, delta.<name>.values/.indices and grad.delta.<name>.
  distill.safetensors         student qwen2-tiny-f32, teacher llama-tiny-f32: forward KL and
                              generalized JSD (β = 0.5, T = 2) as TRL's generalized_jsd_loss
                              computes them; losses and the gradients of a few tensors.
  adamw.safetensors           ten AdamW steps (full fine-tune of qwen2-tiny-f32: tied, biases)
                              with two accumulated micro-batches per step, gradient clipping at
                              1.0 and a linear warm-up schedule; the loss of every step and the
                              final parameters. The metadata also holds OneCycleLR's
                              learning rates (cosine, 10% warm-up) for 20 steps.
  delta-grads-llama-tiny-f32.safetensors
                              what the plugin ABI's loss_and_gradient and
                              accumulate_sensitivities return (no LoRA): the same batch, a dense
                              delta on layer 0 k_proj, a row-sparse one on layer 1 gate_proj,
                              a column-sparse one on layer 0 down_proj; loss, grad.delta.<name>;
                              and, for the base model, sens.<name> = Σ over the three sequences
                              of |θ ⊙ ∂loss_seq/∂θ| (each sequence's own mean loss).

    python3 tools/gen_training_fixtures.py              # everything
    python3 tools/gen_training_fixtures.py delta-grads  # only the last one
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "Tests", "Fixtures", "models")
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "training")
META = {"torch": torch.__version__, "transformers": transformers.__version__,
        "generator": "tools/gen_training_fixtures.py"}

# Right-padded batch: sequence 1 masks its 5-token prompt, sequence 2 its last label.
SEQS = [[1, 17, 42, 99, 5, 33, 200], [1, 200, 3, 3, 3, 64, 77, 150, 12, 9, 250, 31], [7, 250, 11, 40, 41]]
PROMPT = [0, 5, 0]
PAD = 0
LORA_TARGETS = ["mlp.up_proj", "mlp.down_proj", "self_attn.v_proj", "self_attn.o_proj"]
RANK, ALPHA = 4, 8


def batch():
    n = max(len(s) for s in SEQS)
    ids, mask, labels = [], [], []
    for s, p in zip(SEQS, PROMPT):
        pad = n - len(s)
        ids.append(s + [PAD] * pad)
        mask.append([1] * len(s) + [0] * pad)
        lab = [-100] * p + s[p:] + [-100] * pad
        labels.append(lab)
    labels[2][len(SEQS[2]) - 1] = -100
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def load(name):
    return transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(MODELS, name), torch_dtype=torch.float32).eval()


class Wrapped(torch.nn.Module):
    """W + Δ (dense, rows or columns) and a LoRA adapter around an nn.Linear."""

    def __init__(self, lin):
        super().__init__()
        self.lin = lin
        self.lora = None
        self.delta = None

    def forward(self, x):
        w = self.lin.weight
        if self.delta is not None:
            kind, idx, val = self.delta
            if kind == "dense":
                w = w + val
            elif kind == "rows":
                w = w.index_add(0, idx, val)
            else:
                w = w.index_add(1, idx, val)
        y = F.linear(x, w, self.lin.bias)
        if self.lora is not None:
            a, b, scale = self.lora
            y = y + scale * ((x @ a.t()) @ b.t())
        return y


def wrap(model, name):
    parent, attr = name.rsplit(".", 1)
    mod = model.get_submodule(parent)
    w = Wrapped(getattr(mod, attr))
    setattr(mod, attr, w)
    return w


def ce_loss(model, ids, mask, labels):
    logits = model(input_ids=ids, attention_mask=mask).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def grads_fixture(name, seed):
    torch.manual_seed(seed)
    model = load(name)
    params = dict(model.named_parameters())
    ids, mask, labels = batch()
    cfg = model.config
    out = {"batch.input_ids": ids.to(torch.int32), "batch.attention_mask": mask.to(torch.int32),
           "batch.labels": labels.to(torch.int32)}
    extra = []
    for layer in range(cfg.num_hidden_layers):
        for t in LORA_TARGETS:
            full = f"model.layers.{layer}.{t}"
            w = wrap(model, full)
            lin = w.lin
            a = (torch.randn(RANK, lin.in_features) * 0.1).requires_grad_()
            b = (torch.randn(lin.out_features, RANK) * 0.1).requires_grad_()
            w.lora = (a, b, ALPHA / RANK)
            key = full + ".weight"
            out[f"lora.{key}.a"] = a.detach().clone()
            out[f"lora.{key}.b"] = b.detach().clone()
            extra.append((f"grad.lora.{key}.a", a))
            extra.append((f"grad.lora.{key}.b", b))
    deltas = [("model.layers.0.self_attn.k_proj", "dense", None),
              ("model.layers.1.mlp.gate_proj", "rows", [3, 17, 40]),
              ("model.layers.1.self_attn.q_proj", "cols", [1, 5, 60])]
    attach_deltas(model, deltas, out, extra)
    loss = ce_loss(model, ids, mask, labels)
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    for pname, p in params.items():
        out[f"grad.{pname}"] = p.grad.detach().clone()
    for key, t in extra:
        out[key] = t.grad.detach().clone()
    out = {k: v.contiguous() for k, v in out.items()}
    meta = dict(META, model=name, lora_rank=str(RANK), lora_alpha=str(ALPHA), kind=kinds_json(deltas))
    save_file(out, os.path.join(OUT, f"grads-{name}.safetensors"), metadata=meta)
    print(f"grads-{name}: loss {loss.item():.6f}, {len(out)} tensors")


def attach_deltas(model, deltas, out, extra):
    """Wraps each (module, kind, indices) of `deltas` with a random trainable delta (dense,
    row-sparse or column-sparse); records its values (and indices) in `out` and the tensor whose
    gradient the fixture stores in `extra`."""
    for full, kind, idx in deltas:
        w = wrap(model, full)
        lin = w.lin
        if kind == "dense":
            val = torch.randn(lin.out_features, lin.in_features) * 0.02
        elif kind == "rows":
            val = torch.randn(len(idx), lin.in_features) * 0.02
        else:
            val = torch.randn(lin.out_features, len(idx)) * 0.02
        val.requires_grad_()
        w.delta = (kind, torch.tensor(idx) if idx is not None else None, val)
        key = full + ".weight"
        out[f"delta.{key}.values"] = val.detach().clone()
        if idx is not None:
            out[f"delta.{key}.indices"] = torch.tensor(idx, dtype=torch.int32)
        extra.append((f"grad.delta.{key}", val))


def kinds_json(deltas):
    return json.dumps({f + ".weight": k for f, k, _ in deltas})


def generalized_jsd_loss(student_logits, teacher_logits, beta, temperature):
    """TRL's GKDTrainer.generalized_jsd_loss (reduction over the given rows: sum / rows)."""
    s = F.log_softmax(student_logits / temperature, dim=-1)
    t = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        jsd = F.kl_div(s, t, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(t, s, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=s.dtype)
        m = torch.logsumexp(torch.stack([s + torch.log(1 - b), t + torch.log(b)]), dim=0)
        jsd = b * F.kl_div(m, t, reduction="none", log_target=True) + \
            (1 - b) * F.kl_div(m, s, reduction="none", log_target=True)
    return jsd.sum() / jsd.shape[0]


def distill_fixture():
    ids, mask, labels = batch()
    teacher = load("llama-tiny-f32")
    out = {"batch.input_ids": ids.to(torch.int32), "batch.attention_mask": mask.to(torch.int32),
           "batch.labels": labels.to(torch.int32)}
    watch = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.q_proj.bias", "model.layers.1.mlp.down_proj.weight", "model.norm.weight"]
    for tag, beta, temp in [("fkl", 0.0, 1.0), ("jsd", 0.5, 2.0)]:
        student = load("qwen2-tiny-f32")
        with torch.no_grad():
            tl = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]
        sl = student(input_ids=ids, attention_mask=mask).logits[:, :-1]
        rows = labels[:, 1:] != -100
        loss = generalized_jsd_loss(sl[rows], tl[rows], beta, temp)
        loss.backward()
        params = dict(student.named_parameters())
        out[f"{tag}.loss"] = loss.detach().reshape(1)
        for w in watch:
            out[f"{tag}.grad.{w}"] = params[w].grad.detach().clone()
        print(f"distill {tag}: {loss.item():.6f}")
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "distill.safetensors"),
              metadata=dict(META, student="qwen2-tiny-f32", teacher="llama-tiny-f32",
                            fkl="beta=0 T=1", jsd="beta=0.5 T=2"))


def adamw_fixture():
    model = load("qwen2-tiny-f32")
    ids, mask, labels = batch()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    sched = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=10)
    micro = [[0, 2], [1]]
    losses, lrs = [], []
    for step in range(10):
        opt.zero_grad()
        total = 0.0
        for mb in micro:
            loss = ce_loss(model, ids[mb], mask[mb], labels[mb]) / len(micro)
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(total)
    out = {"losses": torch.tensor(losses, dtype=torch.float32)}
    for n, p in model.named_parameters():
        out[f"param.{n}"] = p.detach().clone().contiguous()
    # OneCycleLR (cosine) reference learning rates.
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.AdamW([p], lr=1e-3)
    oc = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=3e-5, total_steps=20, pct_start=0.1,
                                             anneal_strategy="cos", div_factor=25.0, final_div_factor=1.0,
                                             cycle_momentum=False)
    onecycle = []
    for _ in range(20):
        onecycle.append(o.param_groups[0]["lr"])
        o.step()
        oc.step()
    meta = dict(META, model="qwen2-tiny-f32", lr="2e-3", betas="0.9,0.95", eps="1e-8",
                weight_decay="0.1", warmup="3", steps="10", clip="1.0", micro_batches=json.dumps(micro),
                lrs=json.dumps(lrs), onecycle=json.dumps(onecycle),
                onecycle_args="max_lr=3e-5 total_steps=20 pct_start=0.1 div_factor=25 final_div_factor=1")
    save_file(out, os.path.join(OUT, "adamw.safetensors"), metadata=meta)
    print("adamw losses", [round(x, 5) for x in losses])


SENSITIVITY_TARGETS = ["model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.o_proj.weight"]


def delta_grads_fixture():
    torch.manual_seed(200)
    name = "llama-tiny-f32"
    model = load(name)
    ids, mask, labels = batch()
    out = {"batch.input_ids": ids.to(torch.int32), "batch.attention_mask": mask.to(torch.int32),
           "batch.labels": labels.to(torch.int32)}
    # Sensitivities of the base model, one sequence at a time.
    params = dict(model.named_parameters())
    sens = {t: torch.zeros_like(params[t]) for t in SENSITIVITY_TARGETS}
    for i in range(ids.shape[0]):
        model.zero_grad()
        ce_loss(model, ids[i:i + 1], mask[i:i + 1], labels[i:i + 1]).backward()
        for t in SENSITIVITY_TARGETS:
            sens[t] += (params[t].detach() * params[t].grad).abs()
    for t in SENSITIVITY_TARGETS:
        out[f"sens.{t}"] = sens[t]
    model.zero_grad()
    deltas = [("model.layers.0.self_attn.k_proj", "dense", None),
              ("model.layers.1.mlp.gate_proj", "rows", [3, 17, 40]),
              ("model.layers.0.mlp.down_proj", "cols", [2, 9, 150])]
    extra = []
    attach_deltas(model, deltas, out, extra)
    loss = ce_loss(model, ids, mask, labels)
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    for key, t in extra:
        out[key] = t.grad.detach().clone()
    out = {k: v.contiguous() for k, v in out.items()}
    meta = dict(META, model=name, kind=kinds_json(deltas), sensitivities=json.dumps(SENSITIVITY_TARGETS))
    save_file(out, os.path.join(OUT, f"delta-grads-{name}.safetensors"), metadata=meta)
    print(f"delta-grads-{name}: loss {loss.item():.6f}, {len(out)} tensors")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    if sys.argv[1:] == ["delta-grads"]:
        delta_grads_fixture()
        return
    for i, name in enumerate(["llama-tiny-f32", "qwen2-tiny-f32", "llama-tiny-bf16", "llama3-tiny-f16"]):
        grads_fixture(name, 100 + i)
    distill_fixture()
    adamw_fixture()
    delta_grads_fixture()
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump(dict(META), f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
