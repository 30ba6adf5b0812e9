"""Semantic IDs: lexforge vs PyTorch + vector-quantize-pytorch, side by side in one run.

1. Training step time of the semantic encoder (MLP 384 → 256 → latent → quantizer → MLP →
   384, AdamW, gradient clipping 1.0, batch 64) with FSQ (4 components of levels [8, 4]) and
   residual VQ (4 stages × 32 codes of width 32, EMA decay 0.95, k-means init, dead-code
   threshold 1). Both sides optimize reconstruction (1 − cos) + commitment only, on the same
   corpus vectors (all-MiniLM-L6-v2 means of word subsets). lexforge's time is its training
   loop's wall time (`SemanticReport.train_seconds`, batching included, embedding excluded).
2. End-to-end pipeline time for 20 corpora × 50 words (corpora from the shared books →
   embeddings → training → artifacts), lexforge only.
3. Word-generation latency (`generate_words(id, 10)`), when a trained generator directory is
   given with --generator.

Needs torch, vector-quantize-pytorch and the lexforge wheel in one venv (a developer venv, not
CI). Usage:

    python benches/compare_semantic.py --steps 200 [--generator runs/semantic/encoder]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "gutenberg"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--generator", type=Path, default=None)
    args = ap.parse_args()

    import lexforge
    from lexforge import semantic

    # Both sides on the same explicit thread count (torch: torch_step_time).
    lexforge.set_num_threads(args.threads)
    print(f"threads: {args.threads} (torch.set_num_threads and lexforge.set_num_threads)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        corpora = semantic.build_corpora(
            SHARED / "books", SHARED / "books.csv", words_per_corpus=50
        )
        corpora_s = time.perf_counter() - t
        # Corpus vectors for the PyTorch side, from lexforge's own embedding of the words
        # (the same inputs both sides quantize; views are word subsets).
        enc_dir = root / "probe"
        semantic.train(corpora, enc_dir, max_steps=1, progress=False)
        enc = semantic.SemanticEncoder.load(enc_dir)
        rng = np.random.default_rng(0)
        rows = []
        for c in corpora:
            for _ in range(16):
                k = int(rng.integers(len(c.words) // 2, len(c.words) + 1))
                words = list(rng.choice(c.words, size=k, replace=False))
                rows.append(words)
        from lexforge import encoder as lx_encoder

        st = lx_encoder.SentenceEncoder.load(lx_encoder.minilm_path())
        vocab = sorted({w for r in rows for w in r})
        emb = st.encode(vocab)
        index = {w: i for i, w in enumerate(vocab)}
        vectors = np.stack([emb[[index[w] for w in r]].mean(0) for r in rows]).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        del enc

        results: dict[str, object] = {"corpora": len(corpora), "corpora_seconds": corpora_s}
        for kind, name in (("fsq", "fsq"), ("residual_vq", "residual_vq")):
            lx = lexforge_step_time(corpora, kind, args.steps, root / kind)
            pt = torch_step_time(
                vectors, "fsq" if kind == "fsq" else "rvq", args.steps, args.threads
            )
            results[name] = {
                "lexforge_ms_per_step": lx * 1e3,
                "torch_ms_per_step": pt * 1e3,
                "speedup": pt / lx,
            }
            print(
                f"{name:<12} lexforge {lx * 1e3:7.2f} ms/step   torch+vqtorch {pt * 1e3:7.2f} "
                f"ms/step   = {pt / lx:.2f}x"
            )

        # End to end, 20 corpora × 50 words.
        t = time.perf_counter()
        small = semantic.build_corpora(SHARED / "books", SHARED / "books.csv", words_per_corpus=50)
        keep = json.loads(small.to_json())
        keep["corpora"] = keep["corpora"][:20]
        sub = semantic.Corpora(json.dumps(keep))
        semantic.train(sub, root / "e2e", progress=False)
        e2e = time.perf_counter() - t
        results["pipeline_20x50_seconds"] = e2e
        print(f"pipeline 20 corpora x 50 words (corpora + embed + train + save): {e2e:.1f} s")

        if args.generator is not None:
            g = semantic.SemanticEncoder.load(args.generator)
            some = next(iter(g.ids.values()))
            g.generate_words(some, 10, seed=0)
            t = time.perf_counter()
            for s in range(5):
                g.generate_words(some, 10, seed=s + 1)
            lat = (time.perf_counter() - t) / 5
            results["generate_words_10_seconds"] = lat
            print(f"generate_words(id, 10): {lat * 1e3:.0f} ms")
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
