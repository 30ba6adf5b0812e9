"""Side-by-side: lexforge tokenizers vs the HF ``tokenizers`` Python package (same engine
version, configured identically), on the books of ../shared/corpora/gutenberg.

Tasks (``--tasks``; all but ``train_texts`` by default):

- ``train_files``: BPE training on every book (vocab 8000, min_frequency 2, byte-level,
  ``<|endoftext|>``), both sides on the book files themselves: HF's fastest ordinary path,
  ``Tokenizer.train(files=[...], trainer=...)`` (native file reading), vs lexforge's
  ``Tokenizer.train(files)`` (Python API); checks that both, and the Rust API, learn the same
  vocabulary and merges;
- ``train_rust``: lexforge's Rust API (``tokenizer-bench train``) against the same round's HF
  file training;
- ``train_texts``: the in-memory paths, HF ``train_from_iterator`` over the lines vs lexforge
  ``Tokenizer.train_from_texts`` over the books' texts;
- ``encode_bpe`` / ``encode_char``: encode throughput (MB/s of UTF-8) on a batch of
  ``--lines`` corpus lines: lexforge ``encode_batch`` (lists and numpy), ``encode_batch_flat``
  and the Rust API, each against HF ``encode_batch_fast`` (ids only, the like-for-like call;
  HF ``encode_batch``, which builds full encodings, is in the note). Inside a round every
  implementation runs once per pass, interleaved, ``--repeat`` passes, best of each.

Threads: both sides compute on rayon pools, HF tokenizers' and lexforge's, sized by
``RAYON_NUM_THREADS`` (read when the pool first starts, so each thread count runs in its own
worker) and ``lexforge.set_num_threads``/``threads=``; ``--threads``/``--rounds``/``--json`` as
in every ``compare_*.py`` (see ``benches/benchlib.py``). The BPE and char tokenizers that the
encode tasks use are trained once, untimed, before the rounds. Needs the ``tokenizers`` package
and the lexforge wheel, and ``tokenizer-bench`` built
(``cargo build -p lexforge-benches --bin tokenizer-bench``):

    python benches/compare_tokenizers.py [--repeat 3] [--threads 1,2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import tokenizers as hf
from benchlib import Bench, Result
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

import lexforge

TASKS = ("train_files", "train_rust", "train_texts", "encode_bpe", "encode_char")
DEFAULT_TASKS = ("train_files", "train_rust", "encode_bpe", "encode_char")


def book_files(books: Path) -> list[Path]:
    return sorted(books.rglob("*.txt"))


def read_books(books: Path) -> list[str]:
    # Bytes, not read_text: text mode would turn CRLF into LF, unlike the Rust side.
    return [p.read_bytes().decode("utf-8-sig") for p in book_files(books)]


def text_lines(text: str) -> list[str]:
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def hf_bpe(vocab: int) -> tuple[hf.Tokenizer, Any]:
    tok = hf.Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(  # type: ignore[no-untyped-call]
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def model_of(tokenizer_json: str) -> Any:
    return json.loads(tokenizer_json)["model"]


def race(repeat: int, fns: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Runs every function once per pass, interleaved, ``repeat`` passes (so machine noise
    hits all alike); each one's best time."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeat)):
        for k, fn in fns.items():
            times[k].append(benchlib.timed(fn)[0])
    return {k: min(v) for k, v in times.items()}


def prepare(args: argparse.Namespace, work: Path) -> None:
    """The tokenizers the encode tasks load, and the batch of lines they encode (untimed)."""
    texts = read_books(args.books)
    # Lines split on "\n" only, keeping it (as lexforge and `tokenizers.train(files)` do;
    # str.splitlines would also split on \r, \x0c, \u2028, ...).
    lines = [line for text in texts for line in text_lines(text)]
    nonblank = [line for line in lines if line.strip()]
    batch = random.Random(0).sample(nonblank, min(args.lines, len(nonblank)))
    (work / "lines.json").write_text(json.dumps(batch))
    if {"encode_bpe", "encode_char"} & set(args.tasks):
        files = [str(p) for p in book_files(args.books)]
        lexforge.Tokenizer.train(files, "bpe", args.vocab, holdout=0.0, progress=False).save(
            work / "bpe"
        )
        lexforge.Tokenizer.train(files, "char", 1000, holdout=0.0, progress=False).save(
            work / "char"
        )


def setup(args: argparse.Namespace, threads: int, work: Path) -> dict[str, Any]:
    lexforge.set_num_threads(threads)
    benchlib.check_threads("lexforge", lexforge.get_num_threads(), threads)
    files = book_files(args.books)
    state: dict[str, Any] = {
        "work": work,
        "files": [str(p) for p in files],
        "mb_corpus": sum(p.stat().st_size for p in files) / 1e6,
        "batch": json.loads((work / "lines.json").read_text()),
    }
    if "train_texts" in args.tasks:
        texts = read_books(args.books)
        state["texts"] = texts
        state["lines"] = [line for text in texts for line in text_lines(text)]
    for name in ("bpe", "char"):
        if f"encode_{name}" not in args.tasks:
            continue
        ours = lexforge.Tokenizer.load(work / name)
        theirs = hf.Tokenizer.from_file(str(work / name / "tokenizer.json"))
        head = state["batch"][:500]
        assert ours.encode_batch(head) == [
            e.ids for e in theirs.encode_batch_fast(head, add_special_tokens=False)
        ], f"lexforge and tokenizers disagree on the {name} tokenizer"
        state[name] = (ours, theirs)
    return state


def train_tasks(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Any]:
    out: dict[str, Result] = {}
    files, mb = state["files"], state["mb_corpus"]
    n_books = len(files)
    if {"train_files", "train_rust"} & set(args.tasks):
        tok, trainer = hf_bpe(args.vocab)
        t_hf, _ = benchlib.timed(lambda: tok.train(files, trainer=trainer))
        models_ = {"HF train(files)": model_of(tok.to_str())}
    if "train_files" in args.tasks:
        t_lf, lf_tok = benchlib.timed(
            lambda: lexforge.Tokenizer.train(
                files, "bpe", args.vocab, holdout=0.0, threads=threads, progress=False
            )
        )
        models_["lexforge Python"] = model_of(lf_tok.to_json())
        out["train_files"] = Result(
            f"BPE train ({n_books} books, {mb:.1f} MB), lexforge Tokenizer.train(files) "
            "vs HF Tokenizer.train(files)",
            mb / t_hf,
            mb / t_lf,
            "MB/s",
        )
    if "train_rust" in args.tasks:
        rs = benchlib.run_binary(
            "tokenizer-bench", "train", args.books, "bpe", args.vocab, 1, threads=threads
        )
        models_["lexforge Rust"] = model_of(rs["tokenizer_json"])
        out["train_rust"] = Result(
            f"BPE train ({n_books} books), lexforge Rust API vs HF Tokenizer.train(files)",
            mb / t_hf,
            mb / rs["seconds"],
            "MB/s",
        )
    if out:
        ref = models_["HF train(files)"]
        same = ", ".join(f"{k} {v == ref}" for k, v in models_.items() if k != "HF train(files)")
        next(iter(out.values())).note = f"same vocabulary and merges as HF: {same}"
    if "train_texts" in args.tasks:
        tok, trainer = hf_bpe(args.vocab)
        t_hf_it, _ = benchlib.timed(lambda: tok.train_from_iterator(state["lines"], trainer))
        t_lf_tx, lf_tx = benchlib.timed(
            lambda: lexforge.Tokenizer.train_from_texts(
                state["texts"], "bpe", args.vocab, holdout=0.0, threads=threads, progress=False
            )
        )
        out["train_texts"] = Result(
            "BPE train in memory, lexforge train_from_texts vs HF train_from_iterator",
            mb / t_hf_it,
            mb / t_lf_tx,
            "MB/s",
            note="same vocabulary and merges: "
            f"{model_of(lf_tx.to_json()) == model_of(tok.to_str())}",
        )
    return out


def encode_tasks(
    name: str, state: dict[str, Any], args: argparse.Namespace, threads: int
) -> dict[str, Result]:
    ours, theirs = state[name]
    batch: list[str] = state["batch"]
    mb = sum(len(line.encode()) for line in batch) / 1e6
    best = race(
        args.repeat,
        {
            "fast": lambda: theirs.encode_batch_fast(batch, add_special_tokens=False),
            "full": lambda: theirs.encode_batch(batch, add_special_tokens=False),
            "lists": lambda: ours.encode_batch(batch),
            "numpy": lambda: ours.encode_batch(batch, as_numpy=True),
            "flat": lambda: ours.encode_batch_flat(batch),
        },
    )
    rs = benchlib.run_binary(
        "tokenizer-bench",
        "encode",
        state["work"] / name,
        state["work"] / "lines.json",
        args.repeat,
        threads=threads,
    )
    what = f"{name.upper() if name == 'bpe' else name} encode ({len(batch)} lines, {mb:.2f} MB)"
    peer = mb / best["fast"]
    impls = {
        "lists": "lexforge encode_batch (lists)",
        "numpy": "lexforge encode_batch (numpy)",
        "flat": "lexforge encode_batch_flat (numpy)",
    }
    out = {
        f"encode_{name}_{k}": Result(
            f"{what}, {label} vs HF encode_batch_fast", peer, mb / best[k], "MB/s"
        )
        for k, label in impls.items()
    }
    full = mb / best["full"]
    out[f"encode_{name}_lists"].note = f"HF encode_batch (full encodings): {full:.1f} MB/s"
    out[f"encode_{name}_rust"] = Result(
        f"{what}, lexforge Rust encode_batch vs HF encode_batch_fast",
        peer,
        rs["mb_per_s"],
        "MB/s",
    )
    return out


def one_round(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Result]:
    out: dict[str, Result] = {}
    if {"train_files", "train_rust", "train_texts"} & set(args.tasks):
        out.update(train_tasks(state, args, threads))
    for name in ("bpe", "char"):
        if f"encode_{name}" in args.tasks:
            out.update(encode_tasks(name, state, args, threads))
    return out


def versions() -> dict[str, str]:
    return {"tokenizers": hf.__version__, "lexforge": benchlib.lexforge_version()}


BENCH = Bench.of(
    globals(),
    name="tokenizers",
    title="Tokenizers (BPE training, encoding)",
    peer="HF tokenizers (Python package)",
    threads_note="RAYON_NUM_THREADS for both rayon pools (HF tokenizers, tokenizer-bench), "
    "lexforge.set_num_threads and threads= for the lexforge wheel",
    binaries=("tokenizer-bench",),
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="encode passes per round (best of)")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--books", type=Path, default=benchlib.BOOKS)
    benchlib.add_tasks(ap, TASKS, DEFAULT_TASKS)
    args = ap.parse_args()
    benchlib.selected(ap, args, TASKS)
    benchlib.run(BENCH, args)


if __name__ == "__main__":
    main()
