"""Semantic IDs: lexforge vs PyTorch + vector-quantize-pytorch, side by side in one run.

1. Training step time of the semantic encoder (MLP 384 → 256 → latent → quantizer → MLP →
   384, AdamW, gradient clipping 1.0, batch 64) with FSQ (4 components of levels [8, 4]) and
   residual VQ (4 stages × 32 codes of width 32, EMA decay 0.95, k-means init, dead-code
   threshold 1). Both sides optimize reconstruction (1 − cos) + commitment only, on the same
   corpus vectors (all-MiniLM-L6-v2 means of word subsets). lexforge's time is its training
   loop's wall time (`TrainReport.train_seconds`, batching included, embedding excluded).
   Tasks ``fsq`` and ``residual_vq``, PyTorch first, ms per step (lower is better).
2. End-to-end pipeline time for 20 corpora × 50 words (corpora from the shared books →
   embeddings → training → artifacts), lexforge only (task ``pipeline``).
3. Word-generation latency (`generate_words(id, 10)`), lexforge only, when a trained generator
   directory is given with --generator (task ``generate``).

The corpora and the PyTorch side's vectors are built once before the rounds (untimed; the
corpora's build time is in the notes). Threads: ``torch.set_num_threads`` (and
``OMP_NUM_THREADS``) for PyTorch, ``lexforge.set_num_threads`` for lexforge, one worker per
thread count; ``--threads``/``--rounds``/``--json`` as in every ``compare_*.py`` (see
``benches/benchlib.py``). Needs torch, vector-quantize-pytorch and the lexforge wheel in one
venv (a developer venv, not CI). Usage:

    python benches/compare_semantic.py --steps 200 [--generator runs/semantic/encoder]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import Bench, Result

SHARED = benchlib.BOOKS.parent
TASKS = ("fsq", "residual_vq", "pipeline", "generate")


def torch_step_time(vectors: np.ndarray, kind: str, steps: int, threads: int) -> float:
    import torch
    from torch import nn
    from vector_quantize_pytorch import FSQ, ResidualVQ

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    d = vectors.shape[1]
    if kind == "fsq":
        latent = 8
        quantizer = FSQ(levels=[8, 4], dim=latent, num_codebooks=4)
    else:
        latent = 32
        quantizer = ResidualVQ(
            dim=latent,
            num_quantizers=4,
            codebook_size=32,
            decay=0.95,
            kmeans_init=True,
            kmeans_iters=10,
            threshold_ema_dead_code=1,
            commitment_weight=0.25,
        )
    enc = nn.Sequential(nn.Linear(d, 256), nn.GELU(), nn.Linear(256, latent))
    dec = nn.Sequential(nn.Linear(latent, 256), nn.GELU(), nn.Linear(256, d))
    params = list(enc.parameters()) + list(dec.parameters()) + list(quantizer.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)
    x_all = torch.from_numpy(vectors)
    rng = np.random.default_rng(0)

    def step() -> None:
        idx = torch.from_numpy(rng.choice(len(vectors), 64, replace=False))
        x = x_all[idx]
        z = enc(x).unsqueeze(1)  # vector-quantize-pytorch takes [batch, seq, dim]
        if kind == "fsq":
            q, _ = quantizer(z)
            aux = torch.zeros(())
        else:
            q, _, commit = quantizer(z)
            aux = commit.sum()
        q = q.squeeze(1)
        rec = nn.functional.cosine_similarity(dec(q), x).mean()
        loss = (1 - rec) + aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def lexforge_step_time(corpora: object, kind: str, steps: int, out: Path) -> float:
    from lexforge import semantic

    shutil.rmtree(out, ignore_errors=True)
    cfg = semantic.default_config()
    cfg["loss"].update(entropy=0.0, diversity=0.0, supervised=0.0, info_nce=0.0)
    cfg["train"].update(
        max_steps=steps, eval_every=0, early_stopping=None, checkpoint_every=0, log_every=50
    )
    report = semantic.train(
        corpora,  # type: ignore[arg-type]
        out,
        quantizer=kind,
        config=cfg,
        progress=False,
    )
    return report.train_seconds / report.steps


def prepare(args: argparse.Namespace, work: Path) -> None:
    from lexforge import encoder as lx_encoder
    from lexforge import semantic

    t = time.perf_counter()
    corpora = semantic.build_corpora(args.books, args.metadata, words_per_corpus=50)
    corpora_s = time.perf_counter() - t
    (work / "corpora.json").write_text(corpora.to_json())
    # Corpus vectors for the PyTorch side, from lexforge's own embedding of the words (the
    # same inputs both sides quantize; views are word subsets).
    rng = np.random.default_rng(0)
    rows = []
    for c in corpora:
        for _ in range(16):
            k = int(rng.integers(len(c.words) // 2, len(c.words) + 1))
            rows.append(list(rng.choice(c.words, size=k, replace=False)))
    st = lx_encoder.SentenceEncoder.load(lx_encoder.minilm_path())
    vocab = sorted({w for r in rows for w in r})
    emb = st.encode(vocab)
    index = {w: i for i, w in enumerate(vocab)}
    vectors = np.stack([emb[[index[w] for w in r]].mean(0) for r in rows]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(work / "vectors.npy", vectors)
    (work / "corpora_seconds.txt").write_text(f"{corpora_s:.2f} s for {len(corpora)} corpora")


def setup(args: argparse.Namespace, threads: int, work: Path) -> dict[str, Any]:
    import torch

    import lexforge
    from lexforge import semantic

    torch.set_num_threads(threads)
    benchlib.check_threads("torch", torch.get_num_threads(), threads)
    lexforge.set_num_threads(threads)
    benchlib.check_threads("lexforge", lexforge.get_num_threads(), threads)
    state: dict[str, Any] = {
        "work": work,
        "corpora": semantic.Corpora((work / "corpora.json").read_text()),
        "vectors": np.load(work / "vectors.npy"),
        "corpora_note": (work / "corpora_seconds.txt").read_text(),
    }
    if "generate" in args.tasks:
        g = semantic.SemanticEncoder.load(args.generator)
        some = next(iter(g.ids.values()))
        g.generate_words(some, 10, seed=0)  # warm-up
        state["generator"] = (g, some)
    return state


def one_round(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Result]:
    from lexforge import semantic

    work: Path = state["work"]
    out: dict[str, Result] = {}
    for kind, label in (("fsq", "FSQ 4 x [8, 4]"), ("residual_vq", "residual VQ 4 x 32 x 32")):
        if kind not in args.tasks:
            continue
        pt = torch_step_time(
            state["vectors"], "fsq" if kind == "fsq" else "rvq", args.steps, threads
        )
        lx = lexforge_step_time(state["corpora"], kind, args.steps, work / f"{kind}-{threads}")
        out[kind] = Result(
            f"{label} training step, batch 64, {args.steps} steps, vs PyTorch + "
            "vector-quantize-pytorch",
            pt * 1e3,
            lx * 1e3,
            "ms/step",
            higher_is_better=False,
            note="" if out else f"corpora (untimed, built once): {state['corpora_note']}",
        )
    if "pipeline" in args.tasks:
        # End to end, 20 corpora × 50 words.
        dest = work / f"e2e-{threads}"
        shutil.rmtree(dest, ignore_errors=True)
        t = time.perf_counter()
        small = semantic.build_corpora(args.books, args.metadata, words_per_corpus=50)
        keep = json.loads(small.to_json())
        keep["corpora"] = keep["corpora"][:20]
        semantic.train(semantic.Corpora(json.dumps(keep)), dest, progress=False)
        out["pipeline"] = Result(
            "pipeline, 20 corpora x 50 words (corpora + embed + train + save), lexforge only",
            None,
            time.perf_counter() - t,
            "s",
            higher_is_better=False,
        )
    if "generate" in args.tasks:
        g, some = state["generator"]
        t = time.perf_counter()
        for s in range(5):
            g.generate_words(some, 10, seed=s + 1)
        out["generate"] = Result(
            "generate_words(id, 10), lexforge only",
            None,
            (time.perf_counter() - t) / 5 * 1e3,
            "ms",
            higher_is_better=False,
        )
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    import torch

    return {
        "torch": torch.__version__,
        "vector-quantize-pytorch": md.version("vector-quantize-pytorch"),
        "lexforge": benchlib.lexforge_version(),
    }


BENCH = Bench.of(
    globals(),
    name="semantic",
    title="Semantic IDs (quantizer training steps, pipeline)",
    peer="PyTorch + vector-quantize-pytorch",
    threads_note=benchlib.TORCH_THREADS,
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--generator", type=Path, default=None)
    ap.add_argument("--books", type=Path, default=SHARED / "books")
    ap.add_argument("--metadata", type=Path, default=SHARED / "books.csv")
    benchlib.add_tasks(ap, TASKS, ("fsq", "residual_vq", "pipeline"))
    args = ap.parse_args()
    if args.generator is not None and "generate" not in args.tasks.split(","):
        args.tasks += ",generate"
    benchlib.selected(ap, args, TASKS)
    if "generate" in args.tasks and args.generator is None:
        ap.error("the 'generate' task needs --generator DIR")
    benchlib.run(BENCH, args)


if __name__ == "__main__":
    main()
