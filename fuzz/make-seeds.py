"""Writes the seed corpus of each fuzz target into fuzz/corpus/<target>/ (checked in; run it
again only to change the seeds). The seeds are small valid inputs, so libFuzzer starts from
files that reach deep into each parser."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent / "corpus"
BOOK = """The Project Gutenberg eBook of A Tiny Book

*** START OF THE PROJECT GUTENBERG EBOOK A TINY BOOK ***

CHAPTER I.

It was a bright cold day in April, and the clocks were striking thirteen. Mr. Smith went
home; he said: "Well?" and left. The end… or is it? Café, naïve, Ünïcödé — “quotes”.

*** END OF THE PROJECT GUTENBERG EBOOK A TINY BOOK ***
"""


def write(target: str, name: str, data: bytes) -> None:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, a in tensors.items():
        raw = a.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def gpt2(v: int = 16, n: int = 8, d: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = {"wte.weight": rng.normal(size=(v, d)), "wpe.weight": rng.normal(size=(n, d))}
    p = "h.0"
    for ln in ("ln_1", "ln_2"):
        t[f"{p}.{ln}.weight"], t[f"{p}.{ln}.bias"] = np.ones(d), np.zeros(d)
    for name, shape in (("attn.c_attn", (d, 3 * d)), ("attn.c_proj", (d, d)),
                        ("mlp.c_fc", (d, 4 * d)), ("mlp.c_proj", (4 * d, d))):
        t[f"{p}.{name}.weight"] = rng.normal(size=shape)
        t[f"{p}.{name}.bias"] = np.zeros(shape[1])
    t["ln_f.weight"], t["ln_f.bias"] = np.ones(d), np.zeros(d)
    return t


def main() -> None:
    for i, pick in enumerate((0, 1, 2, 3)):
        write("tokenizer", f"book-{i}", bytes([pick]) + BOOK.encode())
    write("tokenizer", "two-docs", b"\x00hello world\x00another document here")
    write("text", "book", BOOK.encode())
    write("text", "crlf", BOOK.replace("\n", "\r\n").encode())
    write("text", "bom", "\ufeff".encode() + b"Dr. Who? Yes. No!\n\nMrs. X said \"Hi.\"")
    write("chunk", "book", bytes([3, 1, 20]) + BOOK.encode())
    write("chunk", "capped", bytes([0x82, 2, 0]) + BOOK.encode())
    write("config", "lm.toml", b"""name = "r"
context = 32
[corpus]
paths = ["a.txt"]
[tokenizer.train]
method = "bpe"
vocab_size = 400
[model]
type = "gpt2"
n_layer = 1
[train]
max_steps = 10
""")
    write("config", "matcher.toml", b"base_model = \"m\"\n[head]\nprojection_dim = 32\n[train]\nmax_steps = 3\n")
    write("config", "semantic.toml", b"hidden_dim = 32\n[quantizer]\ntype = \"fsq\"\n[train]\nmax_steps = 4\n")
    write("config", "prepare.toml", b"seed = 1\n[chunk]\nchunk_size = 3\n[pairs]\npairs_per_book = 4\n")
    write("config", "manifest.json", json.dumps({
        "schema_version": 1, "run_id": "r", "kind": "lm", "status": "completed",
        "versions": {"lexforge": "0.1.0", "burn": "0.22.1"},
        "started_at": "2026-12-01T00:00:00Z", "metrics": {"val_loss": 1.5},
        "artifacts": {"a.txt": {"sha256": "0" * 64, "bytes": 3}},
    }).encode())
    write("safetensors", "gpt2-tiny", safetensors(gpt2()))
    write("safetensors", "gpt2-prefixed", safetensors({f"transformer.{k}": v for k, v in gpt2().items()}))
    write("safetensors", "empty-header", struct.pack("<Q", 8) + b"{}      ")


if __name__ == "__main__":
    main()
