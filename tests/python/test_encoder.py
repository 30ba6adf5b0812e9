"""lexforge.SentenceEncoder from Python: parity with the checked-in sentence-transformers
vectors, numpy output, typed errors, threads, progress, cache."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lexforge
from lexforge import SentenceEncoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    return SentenceEncoder.load(lexforge.encoder.minilm_path())


def fixture_sentences() -> tuple[list[str], np.ndarray]:
    lines = (
        (FIXTURES / "minilm_parity" / "sentences.jsonl").read_text(encoding="utf-8").splitlines()
    )
    texts = [json.loads(line)["text"] for line in lines]
    expected = np.fromfile(FIXTURES / "minilm_parity" / "expected.f32", dtype="<f4").reshape(
        len(texts), 384
    )
    return texts, expected


def test_vectors_match_sentence_transformers(minilm: SentenceEncoder) -> None:
    texts, expected = fixture_sentences()
    got = minilm.encode(texts, batch_size=32)
    assert got.shape == (200, 384) and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    cos = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.9999, cos.min()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert minilm.dim == 384 and minilm.max_seq_length == 256 and minilm.pooling == "mean"
    assert "SentenceEncoder(model_type='bert', dim=384" in repr(minilm)


def test_empty_inputs_and_bad_directories(minilm: SentenceEncoder, tmp_path: Path) -> None:
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(lexforge.InvalidInputError, match="text 1 is empty"):
        minilm.encode(["fine", ""])
    with pytest.raises(lexforge.LexforgeNotFoundError):
        SentenceEncoder.load(tmp_path / "nothing-here")
    with pytest.raises(lexforge.InvalidInputError, match="pooling"):
        SentenceEncoder.load(lexforge.encoder.minilm_path(), pooling="median")
    bad = tmp_path / "bad"
    bad.mkdir()
    src = FIXTURES / "roberta_tiny" / "roberta"
    for name in ["config.json", "tokenizer.json"]:
        (bad / name).write_bytes((src / name).read_bytes())
    (bad / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[:-64])
    with pytest.raises(lexforge.ArtifactError, match="model.safetensors"):
        SentenceEncoder.load(bad)


def test_truncate_dim_renormalizes(minilm: SentenceEncoder) -> None:
    short = SentenceEncoder.load(lexforge.encoder.minilm_path(), truncate_dim=128)
    text = ["The sea was calm and the moon shone on the water."]
    full, cut = minilm.encode(text), short.encode(text)
    assert cut.shape == (1, 128)
    head = full[0, :128] / np.linalg.norm(full[0, :128])
    np.testing.assert_allclose(cut[0], head, atol=1e-5)
    assert short.model_id != minilm.model_id


def test_two_threads_encode_at_once_without_holding_the_gil(minilm: SentenceEncoder) -> None:
    """Two Python threads encode at once, and a third runs Python while they compute. The
    evidence is causal, not a timing: each encode call waits, inside its first progress
    callback, until the other call has reached its own first callback. If a call held the GIL
    or a lock the other needs, the other could never get there and the wait would time out.
    A ticker thread must also advance while one call computes: that happens only if the call
    releases the GIL. How much faster two threads are is a benchmark question
    (benches/compare_encoder.py)."""
    texts, _ = fixture_sentences()
    batch = texts[:96]
    reference = minilm.encode(batch)
    results: dict[int, np.ndarray] = {}
    both_inside = threading.Barrier(2, timeout=120)

    def work(i: int) -> None:
        first = [True]

        def progress(done: int, total: int) -> None:
            if first[0]:
                first[0] = False
                both_inside.wait()

        results[i] = minilm.encode(batch, batch_size=16, progress=progress)

    lexforge.set_num_threads(1)
    try:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not both_inside.broken, "the two calls did not run at once"

        # The GIL: a Python thread counts while it sees a call in progress.
        in_call = threading.Event()
        stop = threading.Event()
        ticks = [0]

        def ticker() -> None:
            while not stop.is_set():
                if in_call.is_set():
                    ticks[0] += 1
                time.sleep(0.001)

        tick = threading.Thread(target=ticker)
        tick.start()
        in_call.set()
        minilm.encode(batch)
        in_call.clear()
        stop.set()
        tick.join()
    finally:
        lexforge.set_num_threads(0)
    for i in range(2):
        np.testing.assert_allclose(results[i], reference, atol=1e-5)
    # Holding the GIL for the whole call would leave the ticker at most the one switch between
    # setting the flag and entering the call.
    assert ticks[0] >= 3, ticks[0]


def test_progress_callback_and_cache(tmp_path: Path) -> None:
    texts = [f"Sentence number {i} of the progress test." for i in range(40)]
    calls: list[tuple[int, int]] = []
    enc = SentenceEncoder.load(lexforge.encoder.minilm_path())
    enc.encode(texts, batch_size=16, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(16, 40), (32, 40), (40, 40)]
    cached = SentenceEncoder.load(lexforge.encoder.minilm_path(), cache_dir=tmp_path / "cache")
    first = cached.encode(texts)
    assert cached.cache_stats() == (0, 40)
    second = cached.encode(texts)
    assert cached.cache_stats() == (40, 40)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, enc.encode(texts), atol=1e-6)


def test_progress_bars_are_optional_without_tqdm(tmp_path: Path) -> None:
    # tqdm is the `progress` extra: without it, asking for a bar runs the job without one.
    code = (
        "import sys; sys.modules['tqdm'] = None\n"
        "import lexforge\n"
        "enc = lexforge.SentenceEncoder.load(lexforge.encoder.minilm_path())\n"
        "v = enc.encode(['a b c', 'd e f'], progress=True)\n"
        "print(v.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2, 384)"
    assert "Traceback" not in out.stderr


def _hub_cache(root: Path, model: Path) -> Path:
    """A Hugging Face hub cache holding ``model`` as sentence-transformers/all-MiniLM-L6-v2
    (the layout ``huggingface_hub`` writes: blobs behind snapshot links, ``refs/main``)."""
    repo = root / "models--sentence-transformers--all-MiniLM-L6-v2"
    snap = repo / "snapshots" / "0123abcd"
    for f in model.rglob("*"):
        if f.is_file():
            dest = snap / f.relative_to(model)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(f)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return root


def test_a_hub_id_loads_from_the_local_hf_cache_and_a_miss_names_the_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: SentenceEncoder
) -> None:
    cache = _hub_cache(tmp_path / "hub", lexforge.encoder.minilm_path())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    by_id = SentenceEncoder.load("sentence-transformers/all-MiniLM-L6-v2")
    text = ["The cache holds the same model."]
    np.testing.assert_allclose(by_id.encode(text), minilm.encode(text), atol=1e-6)
    empty = tmp_path / "empty-hub"
    empty.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    with pytest.raises(lexforge.LexforgeNotFoundError) as info:
        SentenceEncoder.load("sentence-transformers/all-MiniLM-L6-v2")
    message = str(info.value)
    assert "never downloads" in message and str(empty) in message, message
