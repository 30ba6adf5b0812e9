"""Side-by-side: lexforge tokenizers vs the HF ``tokenizers`` Python package (same engine
version, configured identically), on the books of ../shared/corpora/gutenberg.

Measures, in one run:
- BPE training time on every book (vocab 8000, min_frequency 2, byte-level, <|endoftext|>),
  through lexforge's Python API, lexforge's Rust API, and ``tokenizers``
  (``train_from_iterator`` over the same lines); checks that both learn the same vocabulary;
- encode throughput (MB/s of UTF-8) on a batch of 10,000 corpus lines for BPE and char:
  lexforge ``encode_batch`` (lists and numpy) and the Rust API, vs ``tokenizers``
  ``encode_batch_fast`` (ids only, the like-for-like call) and ``encode_batch``.

Run from the repository root after scripts/setup.sh (nothing else running):

    .venv/bin/python benches/compare_tokenizers.py [--repeat 5] [--train-repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tokenizers as hf
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

import lexforge

ROOT = Path(__file__).resolve().parents[1]
BOOKS = ROOT.parent / "shared" / "corpora" / "gutenberg" / "books"


def rust_bench(*args: str) -> dict[str, Any]:
    cmd = ["cargo", "run", "-q", "-p", "lexforge-benches", "--bin", "tokenizer-bench", "--"]
    out = subprocess.run([*cmd, *args], cwd=ROOT, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def read_books() -> list[str]:
    # Bytes, not read_text: text mode would turn CRLF into LF, unlike the Rust side.
    return [p.read_bytes().decode("utf-8-sig") for p in sorted(BOOKS.rglob("*.txt"))]


def text_lines(text: str) -> list[str]:
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def hf_bpe_train(lines: list[str], vocab: int) -> hf.Tokenizer:
    tok = hf.Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(  # type: ignore[no-untyped-call]
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def model_of(tokenizer_json: str) -> Any:
    return json.loads(tokenizer_json)["model"]


def encode_rows(
    name: str,
    path: str,
    batch: list[str],
    lines_file: Path,
    repeat: int,
    ratios: dict[str, float],
) -> list[tuple[str, str, float, str]]:
    """Times one tokenizer on ``batch`` in every implementation; adds its ratios."""
    ours = lexforge.Tokenizer.load(path)
    theirs = hf.Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    assert ours.encode_batch(batch[:500]) == [
        e.ids for e in theirs.encode_batch_fast(batch[:500], add_special_tokens=False)
    ], "lexforge and tokenizers disagree"
    mb = sum(len(line.encode()) for line in batch) / 1e6
    label = f"{name} encode ({len(batch)} lines, {mb:.2f} MB)"
    best, med = race(
        repeat,
        {
            "tokenizers encode_batch_fast": lambda: theirs.encode_batch_fast(
                batch, add_special_tokens=False
            ),
            "tokenizers encode_batch": lambda: theirs.encode_batch(batch, add_special_tokens=False),
            "lexforge encode_batch (lists)": lambda: ours.encode_batch(batch),
            "lexforge encode_batch (numpy)": lambda: ours.encode_batch(batch, as_numpy=True),
            "lexforge encode_batch_flat (numpy)": lambda: ours.encode_batch_flat(batch),
        },
    )
    rs = rust_bench("encode", path, str(lines_file), str(repeat))
    for impl in list(best)[2:]:
        ratios[f"{name} encode, {impl} vs encode_batch_fast"] = med[impl]
    ratios[f"{name} encode, Rust encode_batch vs encode_batch_fast (best vs best)"] = (
        rs["seconds"] / best["tokenizers encode_batch_fast"]
    )
    rows = [(label, impl, t, f"{mb / t:.1f} MB/s") for impl, t in best.items()]
    rows.append((label, "lexforge Rust encode_batch", rs["seconds"], f"{rs['mb_per_s']:.1f} MB/s"))
    return rows


def race(
    repeat: int, fns: dict[str, Callable[[], Any]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Runs every function once per round, interleaved, ``repeat`` rounds (so machine noise
    hits all alike). Returns each one's best time and its median time ratio to the first."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    base = list(fns)[0]
    best = {k: min(v) for k, v in times.items()}
    med = {
        k: statistics.median(a / b for a, b in zip(v, times[base], strict=True))
        for k, v in times.items()
    }
    return best, med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5, help="encode repeats (best of)")
    ap.add_argument("--train-repeat", type=int, default=3, help="training repeats (best of)")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    # Both sides compute on rayon pools: HF tokenizers' (RAYON_NUM_THREADS, read when its pool
    # first starts) and lexforge's (the tokenizer-bench subprocesses inherit the variable).
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    lexforge.set_num_threads(args.threads)
    print(f"threads: {args.threads} (RAYON_NUM_THREADS for HF tokenizers and lexforge)")
    subprocess.run(
        ["cargo", "build", "-q", "-p", "lexforge-benches", "--bin", "tokenizer-bench"],
        cwd=ROOT,
        check=True,
    )

    texts = read_books()
    # Lines split on "\n" only, keeping it (as lexforge and `tokenizers.train(files)` do;
    # str.splitlines would also split on \r, \x0c, \u2028, ...).
    lines = [line for text in texts for line in text_lines(text)]
    mb_corpus = sum(len(t.encode()) for t in texts) / 1e6
    rng = random.Random(0)
    batch = rng.sample([line for line in lines if line.strip()], args.lines)

    rows: list[tuple[str, str, float, str]] = []

    # ---- BPE training ---------------------------------------------------------------------
    trained: dict[str, Any] = {}

    def train_hf() -> None:
        trained["hf"] = hf_bpe_train(lines, args.vocab)

    def train_lf() -> None:
        trained["lf"] = lexforge.Tokenizer.train_from_texts(
            texts, "bpe", args.vocab, holdout=0.0, progress=False
        )

    best, med = race(args.train_repeat, {"hf": train_hf, "lf": train_lf})
    t_hf, t_lf = best["hf"], best["lf"]
    hf_tok, lf_tok = trained["hf"], trained["lf"]
    rs = rust_bench("train", str(BOOKS), "bpe", str(args.vocab), str(args.train_repeat))
    same = model_of(lf_tok.to_json()) == model_of(hf_tok.to_str()) == model_of(rs["tokenizer_json"])
    rows += [
        ("BPE train (35 books)", "tokenizers (Python)", t_hf, f"{mb_corpus / t_hf:.2f} MB/s"),
        ("BPE train (35 books)", "lexforge (Python)", t_lf, f"{mb_corpus / t_lf:.2f} MB/s"),
        (
            "BPE train (35 books)",
            "lexforge (Rust)",
            rs["seconds"],
            f"{mb_corpus / rs['seconds']:.2f} MB/s",
        ),
    ]
    ratios = {
        "BPE train, Python API (median of interleaved rounds)": med["lf"],
        "BPE train, Rust API": rs["seconds"] / t_hf,
    }

    with tempfile.TemporaryDirectory() as tmp:
        bpe_dir = lf_tok.save(Path(tmp) / "bpe")
        char_dir = lexforge.Tokenizer.train_from_texts(
            texts, "char", 1000, holdout=0.0, progress=False
        ).save(Path(tmp) / "char")
        lines_file = Path(tmp) / "lines.json"
        lines_file.write_text(json.dumps(batch))

        for name, path in [("BPE", bpe_dir), ("char", char_dir)]:
            rows += encode_rows(name, path, batch, lines_file, args.repeat, ratios)

    print("| task | implementation | time | throughput |")
    print("| --- | --- | --- | --- |")
    for task, impl, t, thr in rows:
        print(f"| {task} | {impl} | {t * 1000:.1f} ms | {thr} |")
    print(f"\nsame BPE vocabulary and merges in all three: {same}")
    print("\nratios (lexforge time / tokenizers time; < 1 means lexforge is faster):")
    for k, v in ratios.items():
        print(f"- {k}: {v:.2f}x")


if __name__ == "__main__":
    main()
