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

Each measurement is the median of `--steps` step times after one warm-up step (lexforge's first
timed step still touches fresh memory, so use at least 5); the two sides alternate task
by task, so machine noise hits both. ``--threads 1,2`` measures each thread count in its own
worker process (both sides at it: ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` for
PyTorch, ``RAYON_NUM_THREADS`` for lexforge, checked against what ``lm-bench`` reports);
``--rounds N`` repeats everything N times, thread counts in turn, and reports medians with the
spread of the ratio (see ``benches/benchlib.py``). Needs torch and transformers (a developer
venv, not CI):

    python benches/compare_lm.py [--steps 6] [--threads 1,2] [--rounds 5] [--tasks char_lstm_train]
    python benches/compare_lm.py --precisions f32,bf16,f16   # GPT-2 training per precision

``--precisions`` times only GPT-2 training, in each precision: lexforge trains mixed precision
(f32 master weights and AdamW state, forward/backward in the reduced type, as its engine does);
PyTorch uses ``torch.autocast("cpu", dtype)`` with f32 weights, its standard AMP recipe.

with the lexforge binary built first (``cargo build -p lexforge-benches --bin lm-bench``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import benchlib
import torch
import transformers
from benchlib import Bench, Result, check_threads, run, run_binary
from torch import nn

TASKS = ("gpt2_train", "char_lstm_train", "gpt2_generate")
DTYPES = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}


def ours(*args: object, threads: int, precision: str | None = None) -> dict[str, Any]:
    env = {} if precision is None else {"LEXFORGE_PRECISION": precision}
    result: dict[str, Any] = run_binary("lm-bench", *args, threads=threads, env=env)
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


def gpt2_logits(m: Any, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = m(x).logits
    return out


def lstm_logits(m: Any, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = m(x)
    return out


def setup(args: argparse.Namespace, threads: int, work: Path) -> None:
    torch.set_num_threads(threads)
    check_threads("torch", torch.get_num_threads(), threads)


def one_round(state: None, args: argparse.Namespace, threads: int) -> dict[str, Result]:
    """Each task once on both sides at `threads` threads, PyTorch then lexforge, task by task
    (tokens/s)."""
    torch.manual_seed(0)
    steps, tasks = args.steps, args.tasks
    out: dict[str, Result] = {}
    L, H, E, T, B, V = 6, 6, 384, 256, 8, 8000

    if args.precisions:
        # GPT-2 training per precision (see the module docstring).
        for p in args.precisions:
            model = gpt2(L, H, E, T, V).train()
            pt = torch_train(model, B, T, V, steps, gpt2_logits, DTYPES[p])
            lf = ours("gpt2-train", L, H, E, T, B, V, steps, threads=threads, precision=p)
            label = f"GPT-2 {L}x{E} train, {p} (autocast / lexforge mixed precision)"
            out[f"gpt2_train_{p}"] = Result(label, B * T / pt, lf["tokens_per_s"], "tokens/s")
        return out

    model = gpt2(L, H, E, T, V).train() if {"gpt2_train", "gpt2_generate"} & set(tasks) else None
    if "gpt2_train" in tasks:
        pt = torch_train(model, B, T, V, steps, gpt2_logits)
        lf = ours("gpt2-train", L, H, E, T, B, V, steps, threads=threads)
        label = f"GPT-2 {L}x{E} train, ctx {T}, batch {B}"
        out["gpt2_train"] = Result(label, B * T / pt, lf["tokens_per_s"], "tokens/s")

    if "char_lstm_train" in tasks:
        De, Dh, Ln, T2, B2, V2 = 128, 512, 2, 128, 16, 100
        lstm = CharLstm(V2, De, Dh, Ln).train()
        pt = torch_train(lstm, B2, T2, V2, steps, lstm_logits)
        lf = ours("lstm-train", De, Dh, Ln, T2, B2, V2, steps, threads=threads)
        label = f"char-LSTM {Ln}x{Dh} train, ctx {T2}, batch {B2}"
        out["char_lstm_train"] = Result(label, B2 * T2 / pt, lf["tokens_per_s"], "tokens/s")

    if model is not None and "gpt2_generate" in tasks:
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
        lf = ours("gpt2-generate", L, H, E, T, V, P, N, steps, threads=threads)
        label = f"GPT-2 {L}x{E} greedy generate, {N} new tokens (KV cache)"
        out["gpt2_generate"] = Result(
            label, N / statistics.median(times), lf["tokens_per_s"], "tokens/s"
        )
    return out


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__}


BENCH = Bench.of(
    globals(),
    name="lm",
    title="Language models (GPT-2 and char-LSTM training, GPT-2 generation)",
    peer="PyTorch + HF transformers",
    threads_note="torch.set_num_threads and OMP_NUM_THREADS for PyTorch, "
    "RAYON_NUM_THREADS for lm-bench, checked",
    binaries=("lm-bench",),
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per measurement (median)")
    ap.add_argument("--precisions", help="comma-separated: time GPT-2 training in each")
    benchlib.add_tasks(ap, TASKS, TASKS)
    args = ap.parse_args()
    benchlib.selected(ap, args, TASKS)
    if args.precisions:
        args.precisions = args.precisions.split(",")
        unknown = set(args.precisions) - set(DTYPES)
        if unknown:
            ap.error(f"unknown precisions: {sorted(unknown)}; known: {', '.join(DTYPES)}")
        # Its own bench name: the precision tables are not the "lm" block's.
        bench = dataclasses.replace(
            BENCH, name="lm-precision", title="GPT-2 training per precision on the CPU"
        )
        run(bench, args)
        return
    run(BENCH, args)


if __name__ == "__main__":
    main()
