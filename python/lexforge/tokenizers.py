"""Tokenizers: train, evaluate, save, load and use BPE, WordPiece, Unigram and char tokenizers.

The engine is Rust (HF ``tokenizers`` 0.23 for BPE/WordPiece/Unigram, lexforge's own char
tokenizer); training and batch encoding release the GIL and use every core.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Union, overload

import numpy as np
import numpy.typing as npt

from lexforge import _native

__all__ = ["Method", "Normalization", "Tokenizer"]

PathLike = Union[str, "os.PathLike[str]"]
Method = Literal["bpe", "wordpiece", "unigram", "char"]
Normalization = Literal["none", "nfc", "nfkc"]


def _paths(corpus: PathLike | Iterable[PathLike]) -> list[str]:
    if isinstance(corpus, (str, os.PathLike)):
        return [os.fspath(corpus)]
    return [os.fspath(p) for p in corpus]


class Tokenizer:
    """A trained tokenizer.

    Create one with :meth:`train`, :meth:`train_from_texts` or :meth:`load`.

    >>> tok = Tokenizer.train_from_texts(["the cat sat on the mat\\n"] * 20, "bpe", 300,
    ...                                  holdout=0.0, progress=False)
    >>> tok.decode(tok.encode("the cat"))
    'the cat'
    """

    __slots__ = ("_native",)

    def __init__(self, native: _native.Tokenizer) -> None:
        self._native = native

    # ---- creation -------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        corpus: PathLike | Iterable[PathLike],
        method: Method = "bpe",
        vocab_size: int = 8000,
        *,
        min_frequency: int | None = None,
        normalization: Normalization | None = None,
        lowercase: bool | None = None,
        special_tokens: Sequence[str] | None = None,
        byte_fallback: bool | None = None,
        holdout: float = 0.05,
        seed: int = 0,
        threads: int | None = None,
        progress: bool | Callable[[dict[str, Any]], object] = True,
    ) -> Tokenizer:
        """Train on text files and directories (every ``.txt`` below them).

        ``holdout`` (0 to 0.5) of the corpus is held out, by document when there are several,
        else by line, deterministically for ``seed``; :attr:`stats` reports coverage on it.
        Options left ``None`` take the method's defaults (see ``TokenizerConfig::new``).
        ``progress=True`` draws bars on stderr; a callable receives every event as a dict
        (``{"type": "progress", "step": 2, ...}``). Raises :class:`InvalidInputError` on an
        empty, non-UTF-8 or binary corpus or an impossible vocab size, and
        :class:`LexforgeNotFoundError` on a missing path.
        """
        return cls._train(_paths(corpus), None, **_train_kwargs(locals()))

    @classmethod
    def train_from_texts(
        cls,
        texts: Iterable[str],
        method: Method = "bpe",
        vocab_size: int = 8000,
        *,
        min_frequency: int | None = None,
        normalization: Normalization | None = None,
        lowercase: bool | None = None,
        special_tokens: Sequence[str] | None = None,
        byte_fallback: bool | None = None,
        holdout: float = 0.05,
        seed: int = 0,
        threads: int | None = None,
        progress: bool | Callable[[dict[str, Any]], object] = True,
    ) -> Tokenizer:
        """Train on in-memory texts, one document each (like HF's ``train_from_iterator``)."""
        return cls._train([], list(texts), **_train_kwargs(locals()))

    @classmethod
    def _train(
        cls,
        paths: list[str],
        texts: list[str] | None,
        *,
        method: str,
        vocab_size: int,
        min_frequency: int | None,
        normalization: str | None,
        lowercase: bool | None,
        special_tokens: Sequence[str] | None,
        byte_fallback: bool | None,
        holdout: float,
        seed: int,
        threads: int | None,
        progress: bool | Callable[[dict[str, Any]], object],
    ) -> Tokenizer:
        callback = progress if callable(progress) else None
        native = _native.Tokenizer.train(
            paths,
            texts,
            method,
            vocab_size,
            min_frequency,
            normalization,
            lowercase,
            None if special_tokens is None else list(special_tokens),
            byte_fallback,
            holdout,
            seed,
            threads,
            progress is True,
            callback,
        )
        return cls(native)

    @classmethod
    def load(cls, path: PathLike) -> Tokenizer:
        """Load an artifact directory (manifest verified), an HF model folder holding a
        ``tokenizer.json``, or a ``tokenizer.json`` file."""
        return cls(_native.Tokenizer.load(os.fspath(path)))

    def save(self, path: PathLike) -> str:
        """Write the artifact directory ``path`` (``tokenizer.json`` + ``manifest.json``)
        atomically; ``path`` must not exist. Returns it."""
        return os.fspath(self._native.save(os.fspath(path)))

    # ---- use ------------------------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``. ``add_special_tokens`` runs the post-processor (BERT's
        ``[CLS] … [SEP]``)."""
        return self._native.encode(text, add_special_tokens)

    def encode_with_offsets(
        self, text: str, *, add_special_tokens: bool = False
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and the ``(start, end)`` byte offsets of each in ``text`` (UTF-8)."""
        return self._native.encode_with_offsets(text, add_special_tokens)

    @overload
    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = ...,
        as_numpy: Literal[False] = ...,
    ) -> list[list[int]]: ...

    @overload
    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = ...,
        as_numpy: Literal[True],
    ) -> list[npt.NDArray[np.uint32]]: ...

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = False,
        as_numpy: bool = False,
    ) -> list[list[int]] | list[npt.NDArray[np.uint32]]:
        """Token ids of many texts, encoded in parallel with the GIL released; lists, or
        ``uint32`` numpy arrays with ``as_numpy=True``."""
        return self._native.encode_batch(list(texts), add_special_tokens, as_numpy)

    def encode_batch_flat(
        self, texts: Sequence[str], *, add_special_tokens: bool = False
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        """Token ids of many texts as one concatenated ``uint32`` array plus ``n + 1`` row
        starts (text ``i`` is ``ids[starts[i]:starts[i + 1]]``): the fastest way to tokenize
        a corpus, with no Python object per text.

        >>> tok = Tokenizer.train_from_texts(["abc"], "char", 10, holdout=0.0, progress=False)
        >>> ids, starts = tok.encode_batch_flat(["ab", "", "cab"])
        >>> ids.tolist(), starts.tolist()
        ([1, 2, 3, 1, 2], [0, 2, 2, 5])
        """
        return self._native.encode_batch_flat(list(texts), add_special_tokens)

    def decode(
        self, ids: Sequence[int] | npt.NDArray[np.integer[Any]], *, skip_special_tokens: bool = True
    ) -> str:
        """Text of ``ids``; raises :class:`InvalidInputError` on an id outside the vocabulary."""
        return self._native.decode(_id_list(ids), skip_special_tokens)

    def decode_batch(
        self,
        ids: Sequence[Sequence[int] | npt.NDArray[np.integer[Any]]],
        *,
        skip_special_tokens: bool = True,
    ) -> list[str]:
        """Texts of many id sequences, decoded in parallel."""
        return self._native.decode_batch([_id_list(s) for s in ids], skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or ``None``."""
        return self._native.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        """The token of ``id``, or ``None``."""
        return self._native.id_to_token(id)

    # ---- facts ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Vocabulary size, special tokens included."""
        return self._native.vocab_size

    @property
    def method(self) -> str | None:
        """``bpe``, ``wordpiece``, ``unigram``, ``char``, or ``None`` for an unrecognised
        ``tokenizer.json``."""
        return self._native.method

    @property
    def stats(self) -> dict[str, Any] | None:
        """Holdout statistics (``{"corpus": {...}, "holdout": {...}}``) of a tokenizer trained
        by lexforge, ``None`` otherwise."""
        stats: dict[str, Any] | None = self.info()["stats"]
        return stats

    def info(self) -> dict[str, Any]:
        """Method, vocab size, special tokens, config, training and stats."""
        info: dict[str, Any] = json.loads(self._native.info_json())
        return info

    def evaluate(self, texts: Iterable[str]) -> dict[str, Any]:
        """Coverage of this tokenizer on ``texts`` (char coverage, unk and byte-fallback
        rates, tokens per char and word, share of the vocab used)."""
        coverage: dict[str, Any] = json.loads(self._native.evaluate_json(list(texts)))
        return coverage

    def to_json(self) -> str:
        """The ``tokenizer.json`` text (loadable by the HF ``tokenizers`` package)."""
        return self._native.to_json()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(method={self.method!r}, vocab_size={self.vocab_size})"


def _id_list(ids: Sequence[int] | npt.NDArray[np.integer[Any]]) -> list[int]:
    if isinstance(ids, np.ndarray):
        out: list[int] = ids.tolist()
        return out
    return list(ids)


def _train_kwargs(frame: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "method",
        "vocab_size",
        "min_frequency",
        "normalization",
        "lowercase",
        "special_tokens",
        "byte_fallback",
        "holdout",
        "seed",
        "threads",
        "progress",
    )
    return {k: frame[k] for k in keys}
