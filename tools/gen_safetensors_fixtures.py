#!/usr/bin/env python3
"""Regenerates Tests/Fixtures/safetensors/ for SafeTensorsTests.

- reference.safetensors: written by the real `safetensors` package (safetensors.torch.save_file)
  with f32, f16, bf16, i32, a 0-d and an empty tensor, and metadata.
- unaligned.safetensors: written byte by byte here so that tensors start at odd file offsets
  (the format allows it), then read back with the real package to prove it is a valid file.
- *.json next to each: the exact expected header entries and element bit patterns, plus the
  versions that made them.

Run from the repository root:  python3 tools/gen_safetensors_fixtures.py
Made with safetensors==0.8.0, torch==2.13.0+cpu (the script records what it ran with).
"""
import json
import os
import re
import struct

import safetensors
import torch
from safetensors.torch import load_file, save_file

OUT = os.path.join("Tests", "Fixtures", "safetensors")


def bits(tensor):
    """Element bit patterns as hex strings of the element width (exact for every dtype)."""
    flat = tensor.reshape(-1)
    view = {torch.float32: torch.int32, torch.float16: torch.int16,
            torch.bfloat16: torch.int16, torch.int32: torch.int32,
            torch.int64: torch.int64, torch.uint8: torch.uint8}[tensor.dtype]
    width = flat.element_size() * 8
    return ["%0*x" % (width // 4, int(v) & ((1 << width) - 1)) for v in flat.view(view).tolist()]


def values(tensor):
    """Elements as JSON numbers (floats widened exactly to double); non-finite as strings."""
    out = []
    for v in tensor.reshape(-1).tolist():
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            out.append(repr(v))
        else:
            out.append(v)
    return out


def exact(tensor):
    """Elements as exact text: C99 hex floats (float.hex) for floats, decimal for integers."""
    return [v.hex() if isinstance(v, float) else str(v) for v in tensor.reshape(-1).tolist()]


def header_of(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


def describe(path, tensors, metadata):
    n, header = header_of(path)
    entries = {}
    for name, t in tensors.items():
        h = header[name]
        entries[name] = {
            "dtype": h["dtype"], "shape": h["shape"], "data_offsets": h["data_offsets"],
            "byte_offset": 8 + n + h["data_offsets"][0],
            "bits": bits(t), "values": values(t), "exact": exact(t),
        }
    return {
        "made_by": {"safetensors": safetensors.__version__, "torch": torch.__version__,
                    "script": "tools/gen_safetensors_fixtures.py"},
        "header_length": n, "file_size": os.path.getsize(path),
        "metadata": metadata, "tensors": entries,
    }


def reference():
    tensors = {
        "model.embed_tokens.weight": torch.tensor(
            [[0.1, -1.5, 3.1415927], [1e-8, -0.0, 65504.0]], dtype=torch.float32),
        "model.norm.weight": torch.tensor([1.0, 0.5, -2.25, 6.1e-5, 1e-7, 65504.0, float("inf"), -3.0],
                                          dtype=torch.float16),
        "lm_head.weight": torch.tensor([[1.0, -0.0078125], [3.0e38, 1.17e-38], [-7.5, 0.333]],
                                       dtype=torch.bfloat16),
        "ids": torch.tensor([0, -1, 2147483647, -2147483648, 42], dtype=torch.int32),
        "scale": torch.tensor(0.25, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
    }
    metadata = {"format": "pt", "source": "graft fixture", "note": "h\u00e9llo \u2713 \"quoted\""}
    path = os.path.join(OUT, "reference.safetensors")
    save_file(tensors, path, metadata=metadata)
    back = load_file(path)
    for name, t in tensors.items():
        assert back[name].shape == t.shape and bits(back[name]) == bits(t), name
    return path, tensors, metadata


def unaligned():
    """Tensors at odd offsets: a 3-byte U8 first, then F32, BF16 and I64 right after it."""
    tensors = {
        "a_u8": torch.tensor([1, 2, 255], dtype=torch.uint8),
        "b_f32": torch.tensor([1.5, -2.0, 3.25e-3], dtype=torch.float32),
        "c_bf16": torch.tensor([0.5, -100.0], dtype=torch.bfloat16),
        "d_i64": torch.tensor([-1, 1 << 40], dtype=torch.int64),
    }
    order = ["a_u8", "b_f32", "c_bf16", "d_i64"]
    header, data, offset = {}, b"", 0
    for name in order:
        raw = tensors[name].numpy().tobytes() if tensors[name].dtype != torch.bfloat16 else \
            tensors[name].view(torch.int16).numpy().tobytes()
        dtype = {torch.uint8: "U8", torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}[tensors[name].dtype]
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) % 2 == 0:
        text += b" "  # odd header length: the data region itself starts at an odd offset
    path = os.path.join(OUT, "unaligned.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    back = load_file(path)
    for name, t in tensors.items():
        assert torch.equal(back[name], t), name
    return path, tensors, {}


def main():
    os.makedirs(OUT, exist_ok=True)
    for make in (reference, unaligned):
        path, tensors, metadata = make()
        with open(path[: -len(".safetensors")] + ".json", "w") as f:
            text = json.dumps(describe(path, tensors, metadata), indent=1, ensure_ascii=False)
            # One line per list keeps the file short and readable.
            text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)
            f.write(text)
            f.write("\n")
        print(path, os.path.getsize(path), "bytes")
    print("safetensors", safetensors.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
