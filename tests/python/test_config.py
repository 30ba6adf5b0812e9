"""lexforge.config: validated config objects that round-trip through the CLI's TOML and JSON,
and the logging bridge and thread limit of the native module."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import lexforge
from lexforge import config as lc
from lexforge.config import (
    LmRunConfig,
    MatcherTrainConfig,
    PrepareConfig,
    SemanticTrainConfig,
    WordGeneratorConfig,
)

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "debug" / "lexforge"
DEFAULTED = [PrepareConfig, MatcherTrainConfig, SemanticTrainConfig, WordGeneratorConfig]


def lm_values(text: Path) -> dict[str, Any]:
    return {
        "seed": 3,
        "context": 16,
        "corpus": {"paths": [str(text)], "validation_fraction": 0.2},
        "tokenizer": {"train": {"method": "char", "vocab_size": 200}},
        "model": {"type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 16},
        "train": {
            "max_steps": 2,
            "batch_size": 2,
            "warmup_steps": 1,
            "eval_every": 2,
            "checkpoint_every": 2,
        },
        "samples": {"prompts": []},
    }


@pytest.mark.parametrize("cls", DEFAULTED, ids=lambda c: c.__name__)
def test_defaults_round_trip_through_toml_json_and_dicts(
    cls: type[lc.Config], tmp_path: Path
) -> None:
    cfg = cls()
    assert cfg == cls.from_toml(cfg.to_toml()) == cls.from_json(cfg.to_json())
    assert cfg == cls.from_dict(cfg.to_dict()) == cls(dict(cfg))
    for suffix in (".toml", ".json"):
        path = cfg.save(tmp_path / f"c{suffix}")
        assert cls.load(path) == cfg
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert repr(cfg).startswith(f"{cls.__name__}({{")
    assert cfg.fields() == list(cfg.to_dict())


def test_the_module_defaults_match_the_objects() -> None:
    assert MatcherTrainConfig() == lexforge.matcher.default_config()
    assert SemanticTrainConfig() == lexforge.semantic.default_config()
    assert PrepareConfig() == lexforge.data.default_config()


def test_assignments_are_checked_and_a_failed_one_changes_nothing() -> None:
    cfg = MatcherTrainConfig(max_seq_length=64)
    cfg.train.max_steps = 7
    cfg["loss"]["temperature"] = 0.1
    assert cfg.train.max_steps == 7 and cfg.to_dict()["loss"]["temperature"] == 0.1
    before = cfg.to_dict()
    with pytest.raises(lexforge.InvalidInputError, match="max_steps|invalid type"):
        cfg.train.max_steps = "seven"
    with pytest.raises(AttributeError, match="no field 'max_step'; fields: .*max_steps"):
        cfg.train.max_step = 1
    with pytest.raises(lexforge.InvalidInputError, match="unknown field `epochs`"):
        MatcherTrainConfig(epochs=3)
    with pytest.raises(TypeError, match="cannot be removed"):
        del cfg["train"]
    assert cfg.to_dict() == before
    assert "max_steps" in dir(cfg.train)
    copy = cfg.replace(max_seq_length=128)
    assert (copy.max_seq_length, cfg.max_seq_length) == (128, 64)
    with pytest.raises(TypeError, match="required fields"):
        LmRunConfig()


def test_a_null_toml_cannot_hold_is_refused_by_name_and_json_keeps_it(tmp_path: Path) -> None:
    cfg = SemanticTrainConfig()
    cfg.warmup_fraction = None
    with pytest.raises(lexforge.InvalidInputError, match="`warmup_fraction` is null.*json"):
        cfg.to_toml()
    assert SemanticTrainConfig.load(cfg.save(tmp_path / "s.json")) == cfg


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmax_steps = 'x'\n", encoding="utf-8")
    with pytest.raises(lexforge.InvalidInputError, match="bad.toml"):
        MatcherTrainConfig.load(bad)


def test_pipelines_take_config_objects(tmp_path: Path, small_books: list[Path]) -> None:
    cfg = LmRunConfig(lm_values(small_books[0]))
    run = lexforge.lm.train(cfg, tmp_path / "py", progress=False)
    assert run.status == "completed" and run.steps == 2
    assert LmRunConfig(lexforge.verify_run_dir(run.run_dir)["config"]) == cfg
    # The keyword layer of the other pipelines (apply_params) takes objects too.
    from lexforge._params import apply_params

    out = apply_params({"x": 5}, {"x": ("chunk", "max_chunks_per_book")}, PrepareConfig())
    assert out["chunk"]["max_chunks_per_book"] == 5 and isinstance(out["chunk"], dict)


@pytest.mark.skipif(not CLI.exists(), reason="the CLI is built by `cargo test` (CI runs it first)")
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_the_cli_trains_from_a_saved_lm_config(
    tmp_path: Path, suffix: str, small_books: list[Path]
) -> None:
    cfg = LmRunConfig(lm_values(small_books[0]))
    cfg.train.lr = 0.002
    path = cfg.save(tmp_path / f"run{suffix}")
    assert lexforge.lm.load_config(path) == cfg.to_dict()
    done = subprocess.run(
        [str(CLI), "lm", "train", str(path), "--out", str(tmp_path / "runs" / "cli"), "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    manifest = lexforge.verify_run_dir(tmp_path / "runs" / "cli")
    assert LmRunConfig(manifest["config"]) == cfg


def test_tracing_events_reach_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="lexforge"):
        lexforge.SentenceEncoder.load(lexforge.encoder.minilm_path())
        assert lexforge.flush_logs(5.0)
    records = [r for r in caplog.records if r.name == "lexforge.nn.encoder"]
    assert records, [r.name for r in caplog.records]
    record = records[0]
    assert record.levelno == logging.INFO and "sentence encoder loaded" in record.getMessage()
    fields: dict[str, str] = record.lexforge_fields  # type: ignore[attr-defined]
    assert fields["model_id"].startswith("bert-6x384@") and "dir" in fields


def test_logging_levels_filter_on_the_python_side(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lexforge"):
        lexforge.SentenceEncoder.load(lexforge.encoder.minilm_path())
        lexforge.flush_logs(5.0)
    assert not [r for r in caplog.records if r.name.startswith("lexforge.")]


def test_num_threads_round_trip() -> None:
    default = lexforge.get_num_threads()
    assert default == len(os.sched_getaffinity(0))
    try:
        lexforge.set_num_threads(1)
        assert lexforge.get_num_threads() == 1
        with pytest.raises(ValueError, match=">= 0"):
            lexforge.set_num_threads(-1)
    finally:
        lexforge.set_num_threads(0)
    assert lexforge.get_num_threads() == default


def test_style_channel_and_views_round_trip_through_toml_and_json(tmp_path: Path) -> None:
    cfg = MatcherTrainConfig(
        head={
            "projection_dim": 384,
            "style_channel": {"buckets": 4096, "dim": 32, "char_ngrams": [2, 4]},
        },
        views={"views": 8, "books": "books/", "chunks_per_book": 100},
    )
    assert (
        cfg
        == MatcherTrainConfig.from_toml(cfg.to_toml())
        == MatcherTrainConfig.from_json(cfg.to_json())
    )
    d = cfg.to_dict()
    assert d["head"]["style_channel"]["word_ngrams"] == [1, 2]  # defaults filled in
    assert d["views"]["neighbours"] is True
    with pytest.raises(lexforge.InvalidInputError, match="unknown field `bucket`"):
        MatcherTrainConfig(head={"style_channel": {"bucket": 3}})
