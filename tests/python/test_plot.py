"""lexforge.plot: the data behind each picture is right, and each picture draws it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

from lexforge import lm, plot

matplotlib.use("Agg")


def test_training_curves_of_a_real_run(tmp_path: Path, small_books: list[Path]) -> None:
    config: dict[str, Any] = {
        "context": 32,
        "corpus": {"paths": small_books[:2], "validation_fraction": 0.25},
        "tokenizer": {"train": {"method": "bpe", "vocab_size": 300}},
        "model": {"type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32},
        "train": {
            "max_steps": 12,
            "batch_size": 4,
            "warmup_steps": 2,
            "eval_every": 6,
            "eval_batches": 2,
            "checkpoint_every": 6,
            "log_every": 1,
        },
        "samples": {"prompts": []},
    }
    run = lm.train(config, tmp_path / "curves", progress=False)
    events = plot.read_events(run.run_dir)
    assert events[0]["type"] == "started" and events[-1]["type"] == "completed"
    # A killed run leaves a partial last line: it is skipped, not an error.
    with open(run.run_dir / "events.jsonl", "a", encoding="utf-8") as f:
        f.write('{"type": "progr')
    assert plot.read_events(run.run_dir) == events
    ax = plot.training_curves(run.run_dir)
    lines = {line.get_label(): line for line in ax.get_lines()}
    train_line, eval_line = lines["loss (progress)"], lines["val_loss (eval)"]
    assert np.asarray(train_line.get_xdata()).tolist() == list(range(1, 13))
    assert np.asarray(eval_line.get_xdata()).tolist() == [6, 12]
    want = [e["metrics"]["val_loss"] for e in events if e["type"] == "eval"]
    assert np.asarray(eval_line.get_ydata()).tolist() == want


def test_reliability_bins_measure_calibration() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20_000)
    calibrated = rng.uniform(size=p.size) < p  # P(y=1 | p) = p
    good = plot.reliability_bins(p, calibrated, bins=10)
    assert good["ece"][0] < 0.02
    assert good["count"].sum() == p.size
    overconfident = p > 0.5  # certain where it says 0.6
    bad = plot.reliability_bins(p, overconfident, bins=10)
    assert bad["ece"][0] > 0.2
    ax = plot.reliability_diagram(p, calibrated)
    assert "ECE 0.0" in ax.get_title()
    with pytest.raises(ValueError):
        plot.reliability_bins([0.5], [1, 0])


def test_codebook_usage_counts_every_level() -> None:
    ids = np.array([[0, 1], [0, 2], [3, 2]])
    counts = plot.code_usage(ids, [4, 3])
    assert [c.tolist() for c in counts] == [[2, 0, 0, 1], [0, 1, 2]]
    axes = plot.codebook_usage(ids, [4, 3])
    assert [ax.get_title() for ax in axes] == ["level 0: 2/4 codes used", "level 1: 2/3 codes used"]
    assert [p.get_height() for p in axes[0].patches] == [2, 0, 0, 1]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="outside"):
        plot.code_usage([[0, 3]], [4, 3])


def test_projection_keeps_the_main_direction_and_colours_labels() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(size=200)
    x = np.outer(t, [3.0, 0.0, 4.0]) + 0.01 * rng.normal(size=(200, 3))
    xy = plot.project_2d(x)
    assert xy.shape == (200, 2)
    assert abs(np.corrcoef(xy[:, 0], t)[0, 1]) > 0.999
    labels = ["a" if v > 0 else "b" for v in t]
    ax = plot.embedding_projection(x, labels)
    assert sorted(str(c.get_label()) for c in ax.collections) == ["a", "b"]
    with pytest.raises(ValueError):
        plot.embedding_projection(x, labels[:3])
    assert json.dumps(xy.tolist())  # plain floats
