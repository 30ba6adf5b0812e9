"""The README quickstart, as shipped: BPE + a small GPT-2 on six novels must beat the unigram
baseline by at least 15% in validation cross-entropy (issue #4's acceptance line)."""

from __future__ import annotations

import os
from pathlib import Path

from lexforge import lm

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "quickstart" / "gpt2.toml"


def test_the_quickstart_gpt2_beats_the_unigram_baseline_by_15_percent(tmp_path: Path) -> None:
    config = lm.load_config(CONFIG)
    # Same run, written under tmp_path; the corpus paths are relative to the repository root.
    config["corpus"]["paths"] = [os.path.normpath(ROOT / p) for p in config["corpus"]["paths"]]
    run = lm.train(config, tmp_path / "quickstart-gpt2", progress=False)
    m = run.metrics
    assert run.status == "completed" and run.steps == config["train"]["max_steps"]
    assert m["val_loss"] <= 0.85 * m["unigram_entropy"], m
    model = run.load_model()
    out = model.generate("It was", 20, temperature=0.8, top_k=40, seed=1)[0]
    assert out.tokens_generated > 0 and out.text.strip()
