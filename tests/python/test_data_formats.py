"""Prepared datasets leave lexforge: Parquet pair files read by pandas, polars and Hugging Face
datasets with the same rows as the JSON Lines output, and a matcher trains from either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import polars as pl
import pytest
from conftest import copy_library

import lexforge
import lexforge.data as ld

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "roberta_tiny" / "roberta"
PARAMS: dict[str, Any] = dict(
    seed=11,
    chunk_size=3,
    max_chunks_per_book=6,
    pairs_per_book=8,
    validation_fraction=0.25,
    test_fraction=0.25,
    topics_k=3,
)
TYPED = {
    "text1": "string",
    "text2": "string",
    "label": "uint8",
    "book1": "string",
    "book2": "string",
    "pair_type": "string",
    "neg_type": "string",
    "topic1": "uint32",
    "topic2": "uint32",
    "same_topic": "bool",
    "chunk1": "uint32",
    "chunk2": "uint32",
}


@pytest.fixture(scope="module")
def datasets_dirs(books: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same books prepared twice, once per format."""
    root = tmp_path_factory.mktemp("formats")
    library = copy_library(
        books,
        root / "books",
        [
            "jane_austen/sense_and_sensibility.txt",
            "charles_dickens/a_tale_of_two_cities.txt",
            "h_g_wells/the_time_machine.txt",
            "mark_twain/adventures_of_huckleberry_finn.txt",
            "oscar_wilde/the_picture_of_dorian_gray.txt",
            "bram_stoker/dracula.txt",
            "william_blake/poems_of_william_blake.txt",
            "thomas_paine/common_sense.txt",
        ],
    )
    out = {}
    for fmt in ("jsonl", "parquet"):
        summary = ld.prepare(
            library, root / fmt, encoder=TINY, progress=False, format=fmt, **PARAMS
        )
        out[fmt] = summary.path
        assert summary.split_path("train").suffix == f".{fmt}"
    return out


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_parquet_has_the_jsonl_rows_with_proper_types(datasets_dirs: dict[str, Path]) -> None:
    for split in ld.SPLITS:
        expected = _jsonl_rows(ld.split_path(datasets_dirs["jsonl"], split))
        assert expected, f"{split} is empty"
        path = ld.split_path(datasets_dirs["parquet"], split)
        assert path.name == f"{split}.parquet"

        frame = pd.read_parquet(path)
        assert list(frame.columns) == list(TYPED)
        assert str(frame["label"].dtype) == "uint8"
        assert str(frame["topic1"].dtype) == "uint32" and str(frame["chunk2"].dtype) == "uint32"
        assert str(frame["same_topic"].dtype) == "bool"
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        assert [{k: _plain(v) for k, v in r.items()} for r in records] == expected

        polars = pl.read_parquet(path)
        assert polars.schema["label"] == pl.UInt8 and polars.schema["topic2"] == pl.UInt32
        assert polars.to_dicts() == expected


def _plain(v: Any) -> Any:
    """numpy scalars as Python values (what json.loads gives)."""
    return v.item() if hasattr(v, "item") else v


def test_load_dataset_gives_the_same_rows_from_both_formats(
    datasets_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from_parquet = ld.load_dataset(datasets_dirs["parquet"])
    from_jsonl = ld.load_dataset(datasets_dirs["jsonl"])
    assert set(from_parquet) == {"train", "validation", "test"}
    for split in ld.SPLITS:
        expected = _jsonl_rows(ld.split_path(datasets_dirs["jsonl"], split))
        assert from_parquet[split].to_list() == expected
        assert from_jsonl[split].to_list() == expected
        assert from_parquet[split].features == from_jsonl[split].features
    assert from_parquet["train"].features["label"].dtype == "uint8"


def test_a_matcher_trains_from_a_parquet_dataset(
    datasets_dirs: dict[str, Path], tmp_path: Path
) -> None:
    reports = {
        fmt: lexforge.matcher.train(
            datasets_dirs[fmt],
            tmp_path / fmt,
            base_model=TINY,
            max_steps=4,
            batch_size=8,
            warmup_steps=1,
            eval_every=4,
            checkpoint_every=4,
            max_seq_length=24,
            progress=False,
        )
        for fmt in ("jsonl", "parquet")
    }
    # Same pairs, same seed: the same training, whichever file format carried the pairs.
    assert reports["parquet"].steps == reports["jsonl"].steps == 4
    assert reports["jsonl"].test is not None
    assert reports["parquet"].test == reports["jsonl"].test


def test_split_path_and_load_dataset_refuse_what_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.parquet or train\.jsonl"):
        ld.split_path(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        ld.split_path(tmp_path, "dev")
