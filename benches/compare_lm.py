"""Side-by-side: lexforge language-model training and generation vs PyTorch / HF transformers.

Measures, in one run, on this machine's CPU with the same thread count on both sides:
- GPT-2 training throughput (tokens/s): 6 layers, 6 heads, 384 dims, context 256, batch 8,
  vocab 8000, dropout 0; one step = forward, cross-entropy, backward, global-norm clipping
  (1.0), AdamW. lexforge: ``lm-bench gpt2-train`` (the engine's step on burn's flex backend).
  PyTorch: ``transformers.GPT2LMHeadModel`` + ``torch.optim.AdamW`` +
  ``clip_grad_norm_``.
- char-LSTM training throughput: embedding 128, 2 x 512 LSTM, context 128, batch 16, vocab 100.
  PyTorch: ``nn.Embedding`` + ``nn.LSTM(num_layers=2)`` + ``nn.Linear``.
- GPT-2 generation with a KV cache (tokens/s, greedy, 16-token prompt, 128 new tokens):
  lexforge ``generate`` vs HF ``model.generate(do_sample=False)``.

Each measurement is the median step time after one warm-up step; the two sides alternate task
by task, so machine noise hits both. ``--threads 1,2`` measures each thread count (both sides
at it, lexforge through ``RAYON_NUM_THREADS``, checked against what ``lm-bench`` reports);
``--rounds N`` repeats everything N times, thread counts in turn, and reports medians with the
spread of the ratio. Needs torch and transformers (a developer venv, not CI):

    python benches/compare_lm.py [--steps 5] [--threads 1,2] [--rounds 5] [--tasks char_lstm_train]
    python benches/compare_lm.py --precisions f32,bf16,f16   # GPT-2 training per precision

``--precisions`` times only GPT-2 training, in each precision: lexforge trains mixed precision
(f32 master weights and AdamW state, forward/backward in the reduced type, as its engine does);
PyTorch uses ``torch.autocast("cpu", dtype)`` with f32 weights, its standard AMP recipe.

with the lexforge binary built first (``cargo build -p lexforge-benches --bin lm-bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
LM_BENCH = ROOT / "target" / "debug" / "lm-bench"


THREADS = 2


def ours(*args: object, precision: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    # lexforge's compute pool gets the peer's thread count (torch.set_num_threads below).
    env["RAYON_NUM_THREADS"] = str(THREADS)
    if precision is not None:
        env["LEXFORGE_PRECISION"] = precision
    out = subprocess.run(
        [str(LM_BENCH), *map(str, args)], check=True, capture_output=True, text=True, env=env
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result.get("threads") != THREADS:
        raise SystemExit(f"lm-bench ran on {result.get('threads')} threads, not {THREADS}")
    return result


def batch(b: int, t: int, vocab: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = b * (t + 1)
    ids = (torch.arange(n) * 7919 + step * 104_729) % vocab
    ids = ids.view(b, t + 1)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def torch_train(
    model: nn.Module,
    b: int,
    t: int,
    vocab: int,
    steps: int,
    logits_of: Any,
    dtype: torch.dtype | None = None,
) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-8, weight_decay=0.01)
    times = []
    for step in range(steps + 1):
        x, y = batch(b, t, vocab, step)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = logits_of(model, x)
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step > 0:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


class CharLstm(nn.Module):
    def __init__(self, vocab: int, d_embed: int, d_hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_embed)
        self.lstm = nn.LSTM(d_embed, d_hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(d_hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embedding(x))
        out: torch.Tensor = self.proj(h)
        return out


def gpt2(layers: int, heads: int, embd: int, ctx: int, vocab: int) -> Any:
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=ctx,
        n_embd=embd,
        n_layer=layers,
        n_head=heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return transformers.GPT2LMHeadModel(config)


def precision_matrix(precisions: list[str], steps: int) -> None:
    """GPT-2 training tokens/s per precision, both sides (see the module docstring)."""
    dtypes = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}
    L, H, E, T, B, V = 6, 6, 384, 256, 8, 8000
    print(f"torch {torch.__version__}, GPT-2 {L}x{E}, context {T}, batch {B}, vocab {V}")
    print(f"{'precision':<10}{'PyTorch tok/s':>15}{'lexforge tok/s':>16}{'ratio':>8}")
    for p in precisions:
        model = gpt2(L, H, E, T, V).train()
        pt = torch_train(model, B, T, V, steps, lambda m, x: m(x).logits, dtypes[p])
        lf = ours("gpt2-train", L, H, E, T, B, V, steps, precision=p)
        pt_tps, lf_tps = B * T / pt, lf["tokens_per_s"]
        print(f"{p:<10}{pt_tps:>15.0f}{lf_tps:>16.0f}{lf_tps / pt_tps:>8.2f}")


TASKS = ("gpt2_train", "char_lstm_train", "gpt2_generate")


def one_round(steps: int, threads: int, tasks: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Each task once on both sides at `threads` threads: task -> (PyTorch, lexforge)
    tokens/s. The sides alternate task by task, so machine noise hits both."""
    global THREADS
    THREADS = threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out: dict[str, tuple[float, float]] = {}

    L, H, E, T, B, V = 6, 6, 384, 256, 8, 8000
    model = gpt2(L, H, E, T, V).train()
    if "gpt2_train" in tasks:
        pt = torch_train(model, B, T, V, steps, lambda m, x: m(x).logits)
        lf = ours("gpt2-train", L, H, E, T, B, V, steps)
        out["gpt2_train"] = (B * T / pt, lf["tokens_per_s"])

    if "char_lstm_train" in tasks:
        De, Dh, Ln, T2, B2, V2 = 128, 512, 2, 128, 16, 100
        lstm = CharLstm(V2, De, Dh, Ln).train()
        pt = torch_train(lstm, B2, T2, V2, steps, lambda m, x: m(x))
        lf = ours("lstm-train", De, Dh, Ln, T2, B2, V2, steps)
        out["char_lstm_train"] = (B2 * T2 / pt, lf["tokens_per_s"])

    if "gpt2_generate" not in tasks:
        return out
    # GPT-2 generation with a KV cache.
    P, N = 16, 128
    model.eval()
    prompt = torch.tensor([[(i * 31) % V for i in range(P)]])
    times = []
    with torch.no_grad():
        for i in range(steps + 1):
            t0 = time.perf_counter()
            gen = model.generate(
                prompt, max_new_tokens=N, min_new_tokens=N, do_sample=False, pad_token_id=0
            )
            if i > 0:
                times.append(time.perf_counter() - t0)
    assert gen.shape[1] == P + N
    lf = ours("gpt2-generate", L, H, E, T, V, P, N, steps)
    out["gpt2_generate"] = (N / statistics.median(times), lf["tokens_per_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    ap.add_argument(
        "--threads", default="2", help="comma-separated thread counts, both sides (e.g. 1,2)"
    )
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds per thread count")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--precisions", help="comma-separated: time GPT-2 training in each")
    ap.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}"
    )
    args = ap.parse_args()
    tasks = tuple(args.tasks.split(","))
    unknown = set(tasks) - set(TASKS)
    if unknown:
        ap.error(f"unknown tasks: {sorted(unknown)}")
    counts = [int(x) for x in args.threads.split(",")]
    print(f"threads: {counts} (torch.set_num_threads and lexforge's RAYON_NUM_THREADS, equal)")
    if args.precisions:
        global THREADS
        THREADS = counts[0]
        torch.set_num_threads(counts[0])
        torch.manual_seed(0)
        precision_matrix(args.precisions.split(","), args.steps)
        return
    # rounds[threads][task] = [(pytorch, lexforge), ...]; rounds run thread counts in turn.
    runs: dict[int, dict[str, list[tuple[float, float]]]] = {n: {} for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            for task, pair in one_round(args.steps, n, tasks).items():
                runs[n].setdefault(task, []).append(pair)
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": {},
    }
    for n, tasks in runs.items():
        per: dict[str, Any] = {}
        for task, pairs in tasks.items():
            ratios = [lf / pt for pt, lf in pairs]
            per[task] = {
                "pytorch_tokens_per_s": statistics.median(pt for pt, _ in pairs),
                "lexforge_tokens_per_s": statistics.median(lf for _, lf in pairs),
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        results["threads"][str(n)] = per
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"torch {results['torch']}, transformers {results['transformers']}, "
        f"{args.rounds} round(s) of {args.steps} steps; medians, ratio spread in brackets"
    )
    for n, per in results["threads"].items():
        print(f"\n{n} thread(s)")
        print(f"{'':<18}{'PyTorch tok/s':>15}{'lexforge tok/s':>16}{'ratio':>8}  spread")
        for task, r in per.items():
            print(
                f"{task:<18}{r['pytorch_tokens_per_s']:>15.0f}{r['lexforge_tokens_per_s']:>16.0f}"
                f"{r['ratio']:>8.2f}  [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"
            )


if __name__ == "__main__":
    main()
