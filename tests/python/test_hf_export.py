"""lexforge's models in the Hugging Face ecosystem, checked in CI without torch.

``tests/fixtures/hf_export`` holds a GPT-2 and a fine-tuned sentence encoder that lexforge
wrote, with what ``transformers`` and ``sentence-transformers`` read from them (made by its
``make_fixture.py``, which also checks them live). Here: a GPT-2 and an encoder lexforge trains
now carry exactly the tensors and config fields those libraries took, and lexforge's outputs
on the checked-in files equal the libraries' recorded ones. The live check against the real
libraries is ``make_fixture.py`` itself (it asserts the same equalities while writing).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import copy_library

import lexforge
import lexforge.data as ld
from lexforge import lm, matcher

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hf_export"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())


def tensors(path: Path) -> dict[str, dict[str, Any]]:
    """A safetensors file's header: name → shape and dtype (no torch needed)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    return {k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in sorted(header.items())}


@pytest.fixture(scope="module")
def fresh_gpt2(books: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 lexforge trains now with the fixture's config (a few steps: the files' layout,
    not the weights, is compared)."""
    cfg = json.loads(json.dumps(EXPECTED["gpt2"]["lm_config"]))
    cfg["corpus"]["paths"] = [str(books / p) for p in cfg["corpus"]["paths"]]
    cfg["train"].update(max_steps=3, eval_every=3, checkpoint_every=3, warmup_steps=1)
    out = tmp_path_factory.mktemp("export") / "gpt2"
    return lm.train(cfg, out, progress=False).run_dir


def test_a_gpt2_we_write_has_the_tensors_and_config_transformers_loaded(
    fresh_gpt2: Path,
) -> None:
    expected = EXPECTED["gpt2"]
    for name in expected["files"]:
        assert (fresh_gpt2 / name).is_file(), name
    assert tensors(fresh_gpt2 / "model.safetensors") == expected["tensors"]
    config = json.loads((fresh_gpt2 / "config.json").read_text())
    for key, value in expected["config"].items():
        assert config.get(key) == value, key


def test_transformers_outputs_on_our_gpt2_are_ours() -> None:
    expected = EXPECTED["gpt2"]
    model = lexforge.LanguageModel.load(FIXTURE / "gpt2")
    for t in expected["texts"]:
        assert model.encode(t["text"]) == t["ids"], "the HF fast tokenizer gave other ids"
        ours = [s.surprisal_bits for s in model.score(t["text"]).tokens]
        assert len(ours) == len(t["surprisal_bits"])
        assert max(abs(a - b) for a, b in zip(ours, t["surprisal_bits"])) < 1e-3
    greedy = expected["greedy"]
    out = model.generate(
        greedy["prompt"], len(greedy["new_ids"]), temperature=0.0, stop_on_eos=False
    )[0]
    assert out.token_ids[-len(greedy["new_ids"]) :] == greedy["new_ids"]


@pytest.fixture(scope="module")
def fresh_encoder(books: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A matcher's encoder lexforge fine-tunes now from the fixture's base."""
    expected = EXPECTED["encoder"]
    work = tmp_path_factory.mktemp("export-encoder")
    copy_library(books, work / "books", expected["books"])
    base = FIXTURE / "base"
    data = ld.prepare(
        work / "books", work / "data", encoder=base, progress=False, **expected["prepare"]
    )
    params = {**expected["matcher"], "max_steps": 2, "eval_every": 2, "checkpoint_every": 2}
    report = matcher.train(data.path, work / "m", base_model=base, progress=False, **params)
    return report.run_dir / "encoder"


def test_an_encoder_we_write_has_the_files_and_tensors_sentence_transformers_loaded(
    fresh_encoder: Path,
) -> None:
    expected = EXPECTED["encoder"]
    files = sorted(str(p.relative_to(fresh_encoder)) for p in fresh_encoder.rglob("*"))
    assert [f for f in files if (fresh_encoder / f).is_file()] == expected["files"]
    assert tensors(fresh_encoder / "model.safetensors") == expected["tensors"]
    # Every weight transformers' model has is in the file (the pooler too, kept from the base).
    assert set(expected["state_dict"]) <= set(expected["tensors"])
    modules = json.loads((fresh_encoder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == expected["modules"]


def test_sentence_transformers_vectors_of_our_encoder_are_ours() -> None:
    expected = EXPECTED["encoder"]
    ours = lexforge.SentenceEncoder.load(FIXTURE / "encoder", normalize=False).encode(
        expected["sentences"]
    )
    theirs = np.asarray(expected["vectors"], dtype=np.float32)
    assert ours.shape == theirs.shape
    assert float(np.abs(ours - theirs).max()) < 1e-4
