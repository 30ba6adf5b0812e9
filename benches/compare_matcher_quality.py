"""Quality of the book matcher against classic baselines (scikit-learn), on the recipe's test split.

Runs the documented recipe (``lexforge matcher pipeline`` with
``examples/matcher/shared-corpus.toml``, timed end to end), then scores the same test pairs with:

- the untrained all-MiniLM-L6-v2 cosine (lexforge's encoder, the same vectors as
  sentence-transformers);
- the cosine of character 1-4-gram TF-IDF vectors (fitted on the training chunks);
- **LR-3**: logistic regression on three cosines (MiniLM, char n-gram TF-IDF, word TF-IDF),
  fitted on the train + validation pairs;
- **LR-SVD**: logistic regression on the three cosines plus the product and absolute
  difference of 128-dim SVD projections of the char n-gram TF-IDF vectors, fitted on 12,000
  pairs drawn from the chunks the matcher trains on (the training books re-chunked with the
  recipe's parameters and its ``views.chunks_per_book`` cap: half same book, half another
  training book);
- the trained lexforge matcher.

For each: ROC-AUC, ROC-AUC on hard negatives only (positives + the negatives mined from a
neighbour book), passage -> book recall@1 over the test books (leave-one-out centroids), and
ECE (15 bins) of its probability (the calibrated one for the matcher; the fitted one for the
logistic regressions; none for raw cosines). Needs scikit-learn and the lexforge wheel:

    python benches/compare_matcher_quality.py [--out DIR] [--threads 2] [--lexforge BIN]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import tomllib
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "gutenberg"
RECIPE = ROOT / "examples" / "matcher" / "shared-corpus.toml"


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def ece(prob: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(y) * abs(prob[m].mean() - y[m].mean())
    return float(total)


def recall_at_1(vectors: np.ndarray, books: list[str]) -> float:
    """Each chunk against every book's centroid, its own chunk left out of its book's."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    names = sorted(set(books))
    index = np.array([names.index(b) for b in books])
    sums = np.zeros((len(names), v.shape[1]))
    for row, b in zip(v, index, strict=True):
        sums[b] += row
    hits = 0
    for row, b in zip(v, index, strict=True):
        c = sums.copy()
        c[b] -= row
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        hits += int(np.argmax(c @ row) == b)
    return hits / len(books)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "bench-matcher-quality")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lexforge", type=Path, default=ROOT / "target" / "debug" / "lexforge")
    ap.add_argument("--config", type=Path, default=RECIPE)
    ap.add_argument("--books", type=Path, default=CORPUS / "books")
    ap.add_argument("--metadata", type=Path, default=CORPUS / "books.csv")
    ap.add_argument("--reuse", action="store_true", help="keep an existing pipeline run")
    args = ap.parse_args()

    # numpy is already loaded (its BLAS pool started): the variables alone would not reach it,
    # so pin_threads also limits it through threadpoolctl.
    benchlib.pin_threads(args.threads)
    import lexforge
    from lexforge import data as ld

    lexforge.set_num_threads(args.threads)
    print(f"threads: {args.threads} (lexforge and scikit-learn/numpy)")
    run = args.out / "run"
    wall = None
    if not (args.reuse and (run / "matcher" / "manifest.json").is_file()):
        shutil.rmtree(run, ignore_errors=True)
        cmd = [str(args.lexforge), "matcher", "pipeline", str(args.books), "--out", str(run)]
        cmd += ["--metadata", str(args.metadata), "--config", str(args.config), "--json"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        print(f"recipe wall time (prepare + train + calibrate + evaluate): {wall:.0f} s")
    dataset = run / "dataset"
    chunks = rows(dataset / "chunks.jsonl")
    pairs = {s: rows(dataset / f"{s}.jsonl") for s in ("train", "validation", "test")}
    test = pairs["test"]
    y = np.array([p["label"] for p in test])
    hard = np.array([p["label"] == 1 or p.get("neg_type") == "hard" for p in test])

    # The chunks the matcher trains on: the training books, re-chunked with the recipe's
    # parameters and its views cap (stage A of preparation is exactly that chunking).
    recipe = tomllib.loads(args.config.read_text())
    cap = recipe["matcher"].get("views", {}).get("chunks_per_book", 200)
    prep_cfg = json.loads((dataset / "manifest.json").read_text())["config"]["prepare"]
    prep_cfg["chunk"]["max_chunks_per_book"] = cap
    shard = args.out / "train-chunks"
    shutil.rmtree(shard, ignore_errors=True)
    ld.prepare_shard(args.books, shard, index=0, count=1, config=prep_cfg)
    train_books = {c["book"] for c in chunks if c["split"] == "train"}
    train_chunks = [c for c in rows(shard / "chunks.jsonl") if c["book"] in train_books]
    by_book: dict[str, list[str]] = {}
    for c in train_chunks:
        by_book.setdefault(c["book"], []).append(c["text"])

    texts = sorted(
        {c["text"] for c in chunks}
        | {p[k] for s in pairs.values() for p in s for k in ("text1", "text2")}
    )
    tid = {t: i for i, t in enumerate(texts)}
    enc = lexforge.SentenceEncoder.load(lexforge.encoder.minilm_path(), max_seq_length=128)
    t0 = time.perf_counter()
    minilm = enc.encode(texts, batch_size=32, progress=False)
    extra = sorted({t for ts in by_book.values() for t in ts} - set(tid))
    minilm_extra = (
        enc.encode(extra, batch_size=32, progress=False)
        if extra
        else np.zeros((0, minilm.shape[1]))
    )
    print(f"MiniLM embeddings for the baselines: {time.perf_counter() - t0:.0f} s")
    vec_of = {t: minilm[i] for t, i in tid.items()} | {
        t: minilm_extra[i] for i, t in enumerate(extra)
    }

    fit_texts = [t for ts in by_book.values() for t in ts]
    char = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True, lowercase=False)
    char.fit(fit_texts)
    word = TfidfVectorizer(analyzer="word", sublinear_tf=True).fit(fit_texts)
    svd = TruncatedSVD(128, random_state=0).fit(char.transform(fit_texts))

    def feats(a: list[str], b: list[str], with_svd: bool) -> np.ndarray:
        ca, cb = char.transform(a), char.transform(b)
        wa, wb = word.transform(a), word.transform(b)
        ma = np.stack([vec_of[t] for t in a])
        mb = np.stack([vec_of[t] for t in b])
        cols = [
            (ma * mb).sum(1),
            np.asarray(ca.multiply(cb).sum(1)).ravel(),
            np.asarray(wa.multiply(wb).sum(1)).ravel(),
        ]
        out = np.stack(cols, 1)
        if with_svd:
            sa, sb = svd.transform(ca), svd.transform(cb)
            sa /= np.maximum(np.linalg.norm(sa, axis=1, keepdims=True), 1e-12)
            sb /= np.maximum(np.linalg.norm(sb, axis=1, keepdims=True), 1e-12)
            out = np.concatenate([out, sa * sb, np.abs(sa - sb)], 1)
        return out

    t1 = [p["text1"] for p in test]
    t2 = [p["text2"] for p in test]
    results: dict[str, dict[str, float | None]] = {}
    test_chunks = [c for c in chunks if c["split"] == "test"]
    test_books = [c["book"] for c in test_chunks]

    def record(name: str, score: np.ndarray, prob: np.ndarray | None, r1: float | None) -> None:
        results[name] = {
            "roc_auc": float(roc_auc_score(y, score)),
            "roc_auc_hard": float(roc_auc_score(y[hard], score[hard])),
            "recall_at_1": r1,
            "ece": ece(prob, y) if prob is not None else None,
        }

    cos_minilm = feats(t1, t2, False)[:, 0]
    record(
        "untrained MiniLM cosine",
        cos_minilm,
        None,
        recall_at_1(np.stack([vec_of[c["text"]] for c in test_chunks]), test_books),
    )
    record(
        "char 1-4-gram TF-IDF cosine",
        feats(t1, t2, False)[:, 1],
        None,
        recall_at_1(char.transform([c["text"] for c in test_chunks]).toarray(), test_books),
    )
    tv = pairs["train"] + pairs["validation"]
    lr3 = LogisticRegression(max_iter=1000).fit(
        feats([p["text1"] for p in tv], [p["text2"] for p in tv], False), [p["label"] for p in tv]
    )
    x3 = feats(t1, t2, False)
    record(
        "LR-3 (train+validation pairs)",
        lr3.decision_function(x3),
        lr3.predict_proba(x3)[:, 1],
        None,
    )
    rng = random.Random(0)
    names = sorted(by_book)
    draws = []
    for _ in range(12_000):
        if rng.random() < 0.5:
            b = rng.choice(names)
            a, c = rng.sample(by_book[b], 2)
            draws.append((a, c, 1))
        else:
            b1, b2 = rng.sample(names, 2)
            draws.append((rng.choice(by_book[b1]), rng.choice(by_book[b2]), 0))
    lrs = LogisticRegression(max_iter=2000).fit(
        feats([d[0] for d in draws], [d[1] for d in draws], True), [d[2] for d in draws]
    )
    xs = feats(t1, t2, True)
    record(
        "LR-SVD (12,000 pairs of the matcher's training chunks)",
        lrs.decision_function(xs),
        lrs.predict_proba(xs)[:, 1],
        None,
    )

    m = lexforge.Matcher.load(run / "matcher")
    scores = m.score_many(list(zip(t1, t2, strict=True)))
    ev = m.evaluate(dataset, split="test")
    record(
        "lexforge matcher (recipe)",
        np.array([s.logit for s in scores]),
        np.array([s.probability for s in scores]),
        ev["retrieval"]["recall_at_1"],
    )
    n_hard = int((hard & (y == 0)).sum())
    n_books = len(set(test_books))
    print(f"\n{len(test)} test pairs ({int(y.sum())} positive, {n_hard} hard negatives), ", end="")
    print(f"{n_books} test books\n")
    print(f"| {'method':<56} | ROC-AUC | ROC-AUC hard | recall@1 | ECE |")
    print(f"| {'-' * 56} | ------- | ------------ | -------- | --- |")

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    for name, r in results.items():
        cells = [fmt(r[k]) for k in ("roc_auc", "roc_auc_hard", "recall_at_1", "ece")]
        print(f"| {name:<56} | " + " | ".join(cells) + " |")
    # The noise floor of the measure: labels drawn from the matcher's calibrated probabilities
    # (a perfectly calibrated model by construction), ECE measured on as many pairs.
    prob = np.array([s.probability for s in scores])
    rng = np.random.default_rng(0)
    floor = [ece(prob, (rng.random(len(prob)) < prob).astype(float)) for _ in range(1000)]
    print(
        f"\nECE of a perfectly calibrated model on {len(prob)} pairs: mean {np.mean(floor):.3f}, "
        f"90th percentile {np.percentile(floor, 90):.3f}"
    )
    if wall is not None:
        print(f"\nrecipe wall time: {wall:.0f} s on {args.threads} threads")
    (args.out / "results.json").write_text(
        json.dumps({"wall_s": wall, "results": results}, indent=2)
    )


if __name__ == "__main__":
    sys.exit(main())
