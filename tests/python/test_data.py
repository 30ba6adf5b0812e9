"""lexforge.data from Python: text tools, prepare, and stage A mapped over Dask and Ray clusters."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_library

import lexforge
import lexforge.data as ld

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "roberta_tiny" / "roberta"
PARAMS: dict[str, Any] = dict(
    seed=5,
    chunk_size=3,
    max_chunks_per_book=6,
    pairs_per_book=8,
    validation_fraction=0.2,
    test_fraction=0.2,
    topics_k=3,
)
DATA_FILES = ["train.jsonl", "validation.jsonl", "test.jsonl", "chunks.jsonl", "books.jsonl"]


@pytest.fixture(scope="module")
def library(books: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_library(
        books,
        tmp_path_factory.mktemp("lib") / "books",
        [
            "jane_austen/emma.txt",
            "william_blake/poems_of_william_blake.txt",
            "h_g_wells/the_time_machine.txt",
            "thomas_paine/common_sense.txt",
            "lewis_carroll/alices_adventures_in_wonderland.txt",
            "arthur_conan_doyle/a_study_in_scarlet.txt",
        ],
    )


def test_text_tools(books: Path) -> None:
    raw = (books / "h_g_wells" / "the_time_machine.txt").read_text(encoding="utf-8")
    text = ld.standardize(raw)
    assert "Project Gutenberg" not in text and "Project Gutenberg" in raw
    assert ld.standardize("ﬁne", normalization="none") == "ﬁne"
    sents = ld.split_sentences("Dr. Moreau left at 9.15 p.m. sharp. H. G. Wells wrote it!")
    assert sents == ["Dr. Moreau left at 9.15 p.m. sharp.", "H. G. Wells wrote it!"]
    spans = ld.sentence_spans("Ünï. Çà va? Oui.")
    assert ["Ünï. Çà va? Oui."[s:e] for s, e in spans] == ["Ünï.", "Çà va?", "Oui."]
    chunks = ld.chunk(text, book="wells/tm", chunk_size=4, overlap=1, max_chunks_per_book=5)
    assert len(chunks) == 5
    assert all(text[c.start : c.end] == c.text and c.book == "wells/tm" for c in chunks)
    with pytest.raises(lexforge.InvalidInputError, match="overlap"):
        ld.chunk(text, chunk_size=2, overlap=2)


def test_prepare_writes_a_split_dataset_and_refuses_bad_input(
    library: Path, tmp_path: Path
) -> None:
    events: list[dict[str, object]] = []
    summary = ld.prepare(
        library,
        tmp_path / "ds",
        encoder=TINY,
        progress=False,
        callback=events.append,
        **PARAMS,
    )
    assert summary.books == {"train": 2, "validation": 2, "test": 2}
    rows = [json.loads(line) for line in summary.split_path("train").read_text().splitlines()]
    assert len(rows) == 16
    assert sum(r["label"] for r in rows) == 8
    assert set(rows[0]) >= {
        "text1",
        "text2",
        "label",
        "book1",
        "book2",
        "pair_type",
        "neg_type",
        "topic1",
        "topic2",
        "same_topic",
    }
    assert {e["type"] for e in events} >= {"progress", "started", "completed"}
    manifest = lexforge.verify_run_dir(summary.path)
    assert manifest["kind"] == "dataset"

    with pytest.raises(TypeError, match="chunk_sise"):
        ld.prepare(library, tmp_path / "x", encoder=TINY, chunk_sise=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(lexforge.InvalidInputError, match="no .txt files"):
        ld.prepare(empty, tmp_path / "y", encoder=TINY, progress=False)
    with pytest.raises(lexforge.LexforgeError, match="already exists"):
        ld.prepare(library, summary.path, encoder=TINY, progress=False, **PARAMS)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _shard(args: tuple[str, str, int, int]) -> str:
    books_dir, out, index, count = args
    return ld.prepare_shard(books_dir, out, index=index, count=count, encoder=TINY, **PARAMS)


@pytest.fixture(scope="module")
def one_process(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one") / "dataset"
    return ld.prepare(library, out, encoder=TINY, progress=False, **PARAMS).path


def _merge_and_compare(shards: list[str], one: Path, out: Path) -> None:
    """Merges (no encoder given or loaded: the shards carry the vectors) and checks every
    data file is byte-identical to the one-process run."""
    merged = ld.merge_shards(shards, out, progress=False, **PARAMS)
    for name in DATA_FILES:
        assert (one / name).read_bytes() == (merged.path / name).read_bytes(), name


def test_stage_a_on_a_dask_cluster_equals_one_process(
    library: Path, one_process: Path, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    jobs = [(str(library), str(tmp_path / f"shard{i}"), i, 3) for i in range(3)]
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        shards = client.gather(client.map(_shard, jobs))
    assert sorted(shards) == sorted(j[1] for j in jobs)
    info = ld.read_shard(shards[1], **PARAMS)
    assert info["part"] == {"index": 1, "count": 3} and info["chunks"] > 0
    _merge_and_compare(shards, one_process, tmp_path / "merged")


def test_stage_a_on_a_ray_cluster_equals_one_process(
    library: Path, one_process: Path, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    jobs = [(str(library), str(tmp_path / f"shard{i}"), i, 3) for i in range(3)]
    # Ray's sockets live in its temp folder, whose path must stay short (AF_UNIX limit).
    ray_tmp = tempfile.mkdtemp(prefix="lfray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=ray_tmp,
    )
    try:
        # The recipe of docs/data.md: one Ray task per shard, the library function itself.
        task = ray.remote(num_cpus=1)(ld.prepare_shard)
        shards = ray.get(
            [
                task.remote(books, out, index=i, count=n, encoder=str(TINY), **PARAMS)
                for books, out, i, n in jobs
            ]
        )
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert sorted(shards) == sorted(j[1] for j in jobs)
    _merge_and_compare(shards, one_process, tmp_path / "merged")


def test_bad_shard_sets_are_typed_errors_naming_the_shard(library: Path, tmp_path: Path) -> None:
    shards = [_shard((str(library), str(tmp_path / f"s{i}"), i, 2)) for i in range(2)]
    out = tmp_path / "out"
    with pytest.raises(lexforge.LexforgeError, match=r"parts \[1\]"):
        ld.merge_shards(shards[:1], out, progress=False, **PARAMS)
    with pytest.raises(lexforge.LexforgeError, match="stage-A parameters") as e:
        ld.merge_shards(shards, out, progress=False, **{**PARAMS, "seed": 6})
    assert shards[0] in str(e.value)
    with pytest.raises(lexforge.LexforgeError, match="written twice"):
        ld.merge_shards([*shards, shards[1]], out, progress=False, **PARAMS)
    arrays = Path(shards[1]) / "arrays.safetensors"
    data = bytearray(arrays.read_bytes())
    data[-3] ^= 1
    arrays.write_bytes(bytes(data))
    with pytest.raises(lexforge.LexforgeError) as e:
        ld.merge_shards(shards, out, progress=False, **PARAMS)
    assert shards[1] in str(e.value) and "checksum" in str(e.value).lower(), str(e.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0", "s1"]
