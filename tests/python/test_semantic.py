"""lexforge.semantic: corpora from the shared books and from a callable, FSQ training, the
encoder's encode / decode / similar / labels / collisions, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import lexforge
from lexforge import semantic

SHARED = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "gutenberg"


@pytest.fixture(scope="module")
def corpora() -> semantic.Corpora:
    return semantic.build_corpora(SHARED / "books", SHARED / "books.csv", words_per_corpus=30)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpora: semantic.Corpora) -> Path:
    out = tmp_path_factory.mktemp("semantic") / "fsq"
    report = semantic.train(corpora, out, max_steps=60, seed=1, progress=False)
    assert report.quantizer == "fsq"
    assert len(report.levels) == 4
    assert report.collisions["ids"] == len(corpora)
    assert set(report.heads) == {"style", "complexity", "era"}
    return out


def test_book_corpora_are_labelled_from_the_catalogue(
    corpora: semantic.Corpora, tmp_path: Path
) -> None:
    assert len(corpora) >= 20
    csv = (SHARED / "books.csv").read_text()
    for c in corpora:
        assert len(c.words) == 30
        assert f",{c.era}," in csv and f",{c.style}," in csv
    path = tmp_path / "corpora.json"
    corpora.save(path)
    again = semantic.Corpora.load(path)
    assert [c.id for c in again] == [c.id for c in corpora]
    assert "Corpora(" in repr(corpora)


def test_a_callable_supplies_words_for_planned_labels() -> None:
    seen: list[dict[str, object]] = []

    def words(labels: dict[str, object], n: int) -> list[str]:
        seen.append(labels)
        return ["The", "anchor", "harbour", "anchor", "sailor", "x1", "mast"][: n + 3]

    plan = [
        {"style": "sea", "complexity": "basic", "era": "now", "variation": 0},
        {"style": "sea", "complexity": "basic", "era": "now", "variation": 1},
    ]
    c = semantic.build_corpora(generator=words, plan=plan, words_per_corpus=3, name="llm")
    assert c.generator == "llm"
    assert [x.words for x in c] == [["anchor", "harbour", "sailor"]] * 2
    assert seen[0] == plan[0]

    def broken(labels: dict[str, object], n: int) -> list[str]:
        raise RuntimeError("rate limited")

    with pytest.raises(lexforge.InvalidInputError, match="rate limited"):
        semantic.build_corpora(generator=broken, plan=plan[:1])
    with pytest.raises(lexforge.InvalidInputError, match="occurs more than once"):
        semantic.build_corpora(generator=words, plan=[plan[0], plan[0]])


def test_encoder_encodes_decodes_and_finds_similar(
    trained: Path, corpora: semantic.Corpora
) -> None:
    enc = lexforge.SemanticEncoder.load(trained)
    assert enc.codebook_sizes == [32, 32, 32, 32]
    assert "quantizer=fsq" in repr(enc)
    ids = enc.ids
    first = corpora[0]
    assert enc.encode(first.words) == ids[first.id]
    v = enc.decode(ids[first.id])
    assert v.shape == (384,) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
    hits = enc.similar(ids[first.id], k=3)
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
    assert len(enc.similar(["anchor", "harbour", "sailor"], k=2)) == 2
    assert set(enc.labels(ids[first.id])) == {"style", "complexity", "era"}
    assert enc.collisions()["ids"] == len(corpora)
    assert len(enc.encode("The anchor held in the harbour.")) == 4
    assert len(enc.encode(np.asarray(v))) == 4
    # Same IDs after a reload.
    assert lexforge.SemanticEncoder.load(trained).ids == ids
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert metrics["quantizer"] == "fsq"


def test_bad_input_is_typed(trained: Path, tmp_path: Path) -> None:
    enc = semantic.SemanticEncoder.load(trained)
    with pytest.raises(lexforge.InvalidInputError, match="outside 0..32"):
        enc.decode([0, 40, 0, 0])
    with pytest.raises(lexforge.InvalidInputError, match="4 components"):
        enc.decode([0, 1])
    with pytest.raises(lexforge.InvalidInputError, match="no usable word"):
        enc.encode(["the", "and"])
    with pytest.raises(lexforge.InvalidInputError, match="384"):
        enc.encode(np.zeros(10, np.float32))
    with pytest.raises(FileNotFoundError):
        enc.generate_words([0, 0, 0, 0])
    with pytest.raises(ValueError, match="unknown quantizer"):
        semantic.train(tmp_path / "none.json", tmp_path / "x", quantizer="pq")
    empty = tmp_path / "empty.json"
    empty.write_text('{"format": 1, "generator": "x", "corpora": []}')
    with pytest.raises(lexforge.InvalidInputError, match="no corpora"):
        semantic.Corpora.load(empty)
    # A damaged weights file is refused with the file named.
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken, ignore=shutil.ignore_patterns("checkpoints"))
    w = broken / "semantic_encoder.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(lexforge.ArtifactError, match="semantic_encoder.safetensors"):
        semantic.SemanticEncoder.load(broken)


def test_guided_generator_gives_real_words_that_fit_the_id(
    corpora: semantic.Corpora, tmp_path: Path
) -> None:
    # A fully trained encoder (the default 400 steps): decode(id) must be close to the
    # corpus for words to fit it.
    enc_dir = tmp_path / "enc"
    semantic.train(corpora, enc_dir, seed=1, progress=False)
    with pytest.raises(TypeError, match="unknown parameter 'pools'"):
        semantic.build_guided_generator(enc_dir, pools=3)
    with pytest.raises(lexforge.InvalidInputError, match="complexity_band"):
        semantic.build_guided_generator(enc_dir, complexity_band=[0.9, 0.1])
    report = semantic.build_guided_generator(enc_dir)
    assert report["vocabulary"] == 25000
    assert set(report["bands"]) == {"basic", "intermediate", "advanced"}
    enc = semantic.SemanticEncoder.load(enc_dir)
    assert enc._info["generator"] == "guided"
    # Words for each corpus's ID land closer to that corpus than to most others.
    st = lexforge.SentenceEncoder.load(lexforge.encoder.minilm_path())

    def centroid(words: list[str]) -> npt.NDArray[np.float32]:
        v: npt.NDArray[np.float32] = st.encode(words, progress=False).mean(0)
        return v / np.float32(np.linalg.norm(v))

    sample = list(corpora)[::4]
    cents = np.stack([centroid(c.words) for c in corpora])
    index = {c.id: i for i, c in enumerate(corpora)}
    closer = []
    for c in sample:
        words = enc.generate_words(enc.ids[c.id], n=10, seed=0)
        assert len(set(words)) == 10 and all(w.isalpha() and w.islower() for w in words)
        assert enc.generate_words(enc.ids[c.id], n=10, seed=0) == words
        s = cents @ centroid(words)
        k = index[c.id]
        closer.append(float(np.mean(np.delete(s, k) < s[k])))
    assert np.mean(closer) > 0.85, closer
    with pytest.raises(lexforge.InvalidInputError, match="outside 0..32"):
        enc.generate_words([0, 40, 0, 0])
