#!/usr/bin/env python3
"""Check a provisioned Hugging Face folder against transformers' own GGUF loader.

  python3 tools/check_provisioned.py models/smollm2-135m-instruct [--gguf PATH] [--tokens 20]

Loads MODEL_DIR with transformers (float32) and the GGUF it came from (path from
models/manifest.json, in the provisioning cache), runs a few prompts whose token ids come from
MODEL_DIR/tokenizer.json, and compares the logits: max abs difference and top-1 agreement per
prompt. Then greedy-generates --tokens tokens from a chat-formatted prompt with the folder and
prints the text. Exits 1 when top-1 agreement falls below --min-top1 (default 0.97).

Needs torch (CPU build: pip install torch==2.13.0+cpu), transformers and accelerate (which
transformers requires to load a GGUF); the pinned versions below are installed quietly if missing.
"""

import argparse
import gc
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

# Pinned versions this check was run with; installed only when the module is missing.
DEPS = {"torch": "2.13.0+cpu", "transformers": "5.23.0", "tokenizers": "0.23.3", "accelerate": "1.15.0",
        "gguf": "0.19.0"}


def ensure_deps():
    import importlib.util
    import subprocess
    missing = [f"{m}=={v}" for m, v in DEPS.items() if importlib.util.find_spec(m) is None]
    if missing:
        print(f"installing {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "Water boils at 100 degrees Celsius, and 2 + 2 = 4. The chemical formula of water is",
]
CHAT = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]


def tokenizer_corpus():
    """A few hundred strings: edge cases, multilingual text, code lines, random word soup."""
    import glob
    import random
    import transformers
    rnd = random.Random(0)
    corpus = [
        "Hello, world!", "Hello world! 123", "The year 2024 had 366 days.", "3.14159 and 1,000,000",
        "x=12345678901234567890", "I'm here, you're there, they'll come, we've seen, she'd go, it's fine",
        "DON'T SHOUT, I'LL LISTEN", "  multiple   spaces", "\n\n\nnewlines\r\n\r\nwindows", "\ttabs\tand  spaces \t",
        "trailing space ", " leading", "", " ", "\n", "Café déjà vu.", "Cafe\u0301 de\u0301ja\u0300 vu (decomposed)",
        "\ufb01 ligature and \uff21 fullwidth", "naïve résumé coöperate", "日本語のテキストです。", "中文文本，包含标点。",
        "한국어 텍스트", "Русский текст, ёжик.", "العربية نص", "emoji 😀🎉👍🏽 and 🇫🇷",
        "def f(x):\n    return x**2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "if __name__ == \"__main__\":\n\tmain()", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>text<|endoftext|>", "a<|im_end|>b", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
        "<|fim_prefix|>def<|fim_suffix|>\n<|fim_middle|>", "<repo_name>x<file_sep>y",
        "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$", "https://example.com/path?q=1&r=2#frag", "user@example.org",
        "C:\\Users\\name\\file.txt", "!!!???...,,,;;;", "----====____", "\u00a0non-breaking\u00a0space",
        "zero\u200bwidth", "\x00\x01control\x7f", "½ ¼ ² ³ Ⅻ ⑤ ٣",
    ]
    root = Path(transformers.__file__).parent
    lines = []
    for f in sorted(glob.glob(str(root / "models/*/modeling_*.py")))[:40]:
        lines += [l for l in Path(f).read_text(encoding="utf-8").split("\n") if l.strip()]
    rnd.shuffle(lines)
    corpus += lines[:200]
    corpus += ["\n".join(lines[i:i + 8]) for i in range(300, 380, 8)]
    words = ("the quick brown fox jumps over lazy dog 42 007 3.5 café Straße naïve 東京 😀 ' 's 're \n \t"
             "   , . ! ?").split(" ")
    for _ in range(100):
        corpus.append("".join(rnd.choice(words) + rnd.choice(["", " ", "  ", "\n", "'s", "'ll "])
                              for _ in range(rnd.randint(1, 12))))
    return corpus


def compare_tokenizers(model_dir, gguf):
    """tokenizer.json against transformers' own tokenizer conversion of the GGUF, as is and with
    the pieces of the original pipeline that conversion leaves out (SmolLM2: the Digits
    pre-tokenizer; Qwen2: the NFC normalizer) put back."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from transformers import AutoTokenizer
    ours = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    pre = json.loads((model_dir / "tokenizer.json").read_text())["pre_tokenizer"]
    ref = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    corpus = tokenizer_corpus()

    def count(ref_tok):
        same, bad_rt, first = 0, 0, []
        for s in corpus:
            a = ours.encode(s, add_special_tokens=False).ids
            b = ref_tok(s, add_special_tokens=False)["input_ids"]
            same += a == b
            bad_rt += ours.decode(a, skip_special_tokens=False) != s
            if a != b and len(first) < 3:
                first.append(s[:40])
        return same, bad_rt, first

    same, bad_rt, first = count(ref)
    print(f"tokenizer: {same}/{len(corpus)} strings encode identically to transformers' GGUF tokenizer "
          f"(differing e.g. {first}); {bad_rt} do not round-trip through decode")
    backend = ref.backend_tokenizer
    patched = []
    if any(p.get("type") == "Digits" for p in pre.get("pretokenizers", [])):
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), backend.pre_tokenizer])
        patched.append("Digits pre-tokenizer")
    if json.loads((model_dir / "tokenizer.json").read_text())["normalizer"] == {"type": "NFC"}:
        backend.normalizer = normalizers.NFC()
        patched.append("NFC normalizer")
    if patched:
        same2, _, first2 = count(ref)
        print(f"tokenizer: with {' and '.join(patched)} added to transformers' conversion: "
              f"{same2}/{len(corpus)} identical" + (f" (differing e.g. {first2})" if first2 else ""))
    return same


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--gguf", type=Path, help="the GGUF file (default: from models/manifest.json)")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("GRAFT_CACHE", Path.home() / ".cache" / "graft")))
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--min-top1", type=float, default=0.97)
    ap.add_argument("--skip-tokenizer", action="store_true", help="skip the tokenizer comparison")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    ensure_deps()
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as tf_logging
    tf_logging.disable_progress_bar()

    torch.set_num_threads(args.threads)
    model_dir = args.model_dir.resolve()
    name = model_dir.name
    gguf = args.gguf
    if gguf is None:
        manifest = json.loads((model_dir.parent / "manifest.json").read_text())
        entry = manifest["models"][name]
        gguf = args.cache_dir / "gguf" / entry["gguf"]["file"]
        quant = entry["gguf"]["quantization"]
    else:
        quant = "?"
    if not gguf.exists():
        sys.exit(f"error: {gguf} not found; run tools/provision {name} first")
    print(f"model: {name}\nfolder: {model_dir}\ngguf: {gguf} (source quantization {quant})")

    if not args.skip_tokenizer:
        compare_tokenizers(model_dir, gguf)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    inputs = [tok.encode(p, add_special_tokens=False).ids for p in PROMPTS]
    # One model in memory at a time: the GGUF reference first, its logits kept, then the folder.
    t0 = time.time()
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                               torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref_logits = [ref(torch.tensor([ids])).logits[0] for ids in inputs]
    del ref
    gc.collect()
    t1 = time.time()
    hf = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    t2 = time.time()
    print(f"GGUF via transformers (dequantize + prompts) {t1 - t0:.1f}s, folder loaded in {t2 - t1:.1f}s")

    worst, agree, total = 0.0, 0, 0
    with torch.no_grad():
        for p, ids, b in zip(PROMPTS, inputs, ref_logits):
            a = hf(torch.tensor([ids])).logits[0]
            d = (a - b).abs().max().item()
            scale = b.abs().max().item()
            top = (a.argmax(-1) == b.argmax(-1))
            worst = max(worst, d)
            agree += int(top.sum())
            total += top.numel()
            print(f"  {len(ids):3d} tokens  max|Δlogit| {d:.3g} (max|logit| {scale:.1f})  "
                  f"top-1 agree {int(top.sum())}/{top.numel()}  {p[:40]!r}")
    print(f"logits: max abs diff {worst:.3g}; top-1 agreement {agree}/{total} = {agree / total:.3f}")

    chat_tok = AutoTokenizer.from_pretrained(model_dir)
    text = chat_tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    ids = tok.encode(text, add_special_tokens=False).ids
    assert ids == chat_tok(text, add_special_tokens=False)["input_ids"], "tokenizer.json vs AutoTokenizer"
    with torch.no_grad():
        t3 = time.time()
        out = hf.generate(torch.tensor([ids]), max_new_tokens=args.tokens, do_sample=False,
                          pad_token_id=chat_tok.pad_token_id)
        t4 = time.time()
    new = out[0, len(ids):].tolist()
    print(f"greedy {len(new)} tokens in {t4 - t3:.1f}s from the chat prompt {CHAT[0]['content']!r}:")
    print("  " + repr(tok.decode(new, skip_special_tokens=False)))
    if agree / total < args.min_top1:
        print(f"FAIL: top-1 agreement below {args.min_top1}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
