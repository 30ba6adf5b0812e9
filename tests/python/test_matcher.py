"""lexforge.matcher from Python: train on a prepared dataset, load, score, search, evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import copy_library

import lexforge
import lexforge.data as ld
from lexforge import matcher

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "roberta_tiny" / "roberta"
# A few steps of a small head on the tiny RoBERTa: what every training test here shares.
SMALL: dict[str, Any] = dict(
    base_model=TINY, lr=1e-3, warmup_steps=1, max_seq_length=32, projection_dim=32, progress=False
)


@pytest.fixture(scope="module")
def dataset(books: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_library(
        books,
        tmp_path_factory.mktemp("mlib") / "books",
        [
            "jane_austen/emma.txt",
            "jane_austen/pride_and_prejudice.txt",
            "h_g_wells/the_time_machine.txt",
            "thomas_paine/common_sense.txt",
            "lewis_carroll/alices_adventures_in_wonderland.txt",
            "arthur_conan_doyle/a_study_in_scarlet.txt",
        ],
    )
    summary = ld.prepare(
        root,
        root.parent / "ds",
        encoder=TINY,
        progress=False,
        seed=3,
        chunk_size=3,
        max_chunks_per_book=8,
        pairs_per_book=12,
        validation_fraction=0.2,
        test_fraction=0.2,
        topics_k=3,
    )
    return summary.path


def test_train_load_score_search_evaluate(dataset: Path, tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    report = matcher.train(
        dataset,
        tmp_path / "m",
        max_steps=6,
        batch_size=8,
        eval_every=3,
        checkpoint_every=3,
        style_features=True,
        callback=events.append,
        **SMALL,
    )
    assert report.steps == 6 and report.stop == "max_steps"
    assert sum(report.books.values()) == 6
    assert report.test is not None and report.baseline is not None
    assert 0.0 <= report.test["roc_auc"] <= 1.0
    assert {e["type"] for e in events} >= {"started", "progress", "completed"}
    metrics = json.loads((tmp_path / "m" / "eval" / "metrics.json").read_text())
    assert metrics["steps"] == 6
    manifest = lexforge.verify_run_dir(tmp_path / "m")
    assert manifest["kind"] == "matcher"

    m = lexforge.Matcher.load(tmp_path / "m")
    assert m.dim == 32 and "Matcher(" in repr(m)
    a = "It is a truth universally acknowledged, that a single man must be in want of a wife."
    b = "The Time Traveller (for so it will be convenient to speak of him) was expounding."
    s = m.score(a, b)
    assert 0.0 <= s.probability <= 1.0 and -1.0 <= s.cosine <= 1.0
    assert m.score(a, b) == lexforge.Matcher.load(tmp_path / "m").score(a, b)
    assert 0.0 <= m.style_similarity(a, b) <= 1.0
    e = m.embed([a, b])
    assert e.shape == (2, 32) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    lib = m.library({"austen": [a, a + " Again."], "wells": [b]})
    assert len(lib) == 2 and lib.books == ["austen", "wells"]
    hits = m.search(a, lib, k=2)
    assert [h.book for h in hits][0] == "austen" and hits[0].rerank is None
    assert not m.has_teacher
    with pytest.raises(lexforge.InvalidInputError, match="teacher"):
        m.search(a, lib, rerank=True)
    ev = m.evaluate(dataset, split="test")
    assert ev["pairs"] > 0 and "retrieval" in ev
    assert m.truncated(a * 20)
    assert s.style_similarity == m.style_similarity(a, b)
    lib = m.library_of_dataset(dataset, "test")
    assert len(lib) == report.books["test"]

    # One resume rule for every pipeline: train refuses an existing run, resume continues it.
    with pytest.raises(lexforge.InvalidInputError, match="already exists"):
        matcher.train(dataset, tmp_path / "m", base_model=TINY, progress=False)
    more = matcher.resume(tmp_path / "m", max_steps=8, progress=False)
    assert (more.steps, more.run_dir) == (8, tmp_path / "m")
    # The library was embedded by the 6-step weights: the 8-step matcher refuses it.
    trained_more = lexforge.Matcher.load(tmp_path / "m")
    assert trained_more.model_id != m.model_id == lib.model_id
    with pytest.raises(lexforge.InvalidInputError, match="embedded by model"):
        trained_more.search(a, lib)

    with pytest.raises(lexforge.InvalidInputError, match="empty"):
        m.score("", b)
    with pytest.raises(TypeError, match="max_stepz"):
        matcher.train(dataset, tmp_path / "x", base_model=TINY, max_stepz=3)
    (tmp_path / "m" / "calibration.json").write_text("{")
    with pytest.raises(lexforge.ArtifactError, match="calibration.json"):
        lexforge.Matcher.load(tmp_path / "m")


def test_style_channel_and_views_train_save_and_reload_identically(
    dataset: Path, tmp_path: Path
) -> None:
    channel = {"buckets": 4096, "dim": 16, "char_ngrams": [2, 3], "word_ngrams": [1, 1]}
    report = matcher.train(
        dataset,
        tmp_path / "m",
        max_steps=4,
        batch_size=3,
        eval_every=2,
        checkpoint_every=2,
        style_channel=channel,
        views={"views": 2, "neighbours": True},
        **SMALL,
    )
    assert report.steps == 4 and report.test is not None
    manifest = lexforge.verify_run_dir(tmp_path / "m")
    saved = manifest["config"]["train"]
    assert saved["head"]["style_channel"]["buckets"] == 4096
    assert saved["views"]["views"] == 2
    m = lexforge.Matcher.load(tmp_path / "m")
    assert m.dim == 32 + 16
    a = "It is a truth universally acknowledged, that a single man must be in want of a wife."
    b = "The Time Traveller (for so it will be convenient to speak of him) was expounding."
    assert m.score(a, b) == lexforge.Matcher.load(tmp_path / "m").score(a, b)
    with pytest.raises(lexforge.InvalidInputError, match="style_channel.dim"):
        matcher.train(
            dataset,
            tmp_path / "bad",
            base_model=TINY,
            style_channel={**channel, "dim": 0},
            projection_dim=32,
            progress=False,
        )
    with pytest.raises(lexforge.InvalidInputError, match="views.views"):
        matcher.train(
            dataset,
            tmp_path / "bad2",
            base_model=TINY,
            views={"views": 1},
            progress=False,
        )
