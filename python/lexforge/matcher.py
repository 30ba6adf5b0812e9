"""The book-text matcher: same book? how close in style? which book?

A bi-encoder (a BERT-family encoder such as all-MiniLM-L6-v2, a projection head, optional style
features) trained on a prepared pair dataset (:func:`lexforge.data.prepare`) with pairwise,
supervised-contrastive and InfoNCE losses, then calibrated on validation (Platt temperature and
threshold; an isotonic cosine → style map) and evaluated on test.

Train, then use::

    import lexforge
    from lexforge import matcher
    report = matcher.train("runs/book-pairs", "runs/matcher", max_steps=80, frozen_layers=3)
    print(report.test["roc_auc"], report.baseline["roc_auc"])
    m = lexforge.Matcher.load("runs/matcher")
    m.score("It is a truth universally acknowledged...", "Emma Woodhouse, handsome...")
    lib = m.library({"austen/emma": emma_passages, "dickens/bleak_house": bleak_passages})
    m.search("A passage to place", lib, k=3)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import numpy.typing as npt

from lexforge import _native
from lexforge._defaults import DEFAULTS, default
from lexforge._jobs import from_fields, run_job, train_job
from lexforge._params import apply_params, flat_places
from lexforge.config import as_dict

__all__ = [
    "Library",
    "Matcher",
    "PairScore",
    "PipelineReport",
    "SearchHit",
    "TrainReport",
    "default_config",
    "default_pipeline_config",
    "pipeline",
    "resume",
    "train",
]

PathLike = Union[str, "os.PathLike[str]"]
Event = dict[str, Any]


def default_config() -> dict[str, Any]:
    """The default training configuration as the nested dict the trainer reads
    (``MatcherTrainConfig``: ``base_model``, ``head``, ``loss``, ``train``, ...)."""
    config: dict[str, Any] = json.loads(_native.matcher_default_config())
    return config


def _config(params: dict[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    if "base_model" in params:
        params = {**params, "base_model": os.fspath(params["base_model"])}
    defaults = default_config()
    return _with_base_model(apply_params(params, flat_places(defaults), config or defaults))


def _with_base_model(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the installed all-MiniLM-L6-v2 as ``base_model`` when it names none."""
    if not config.get("base_model"):
        from lexforge.encoder import minilm_path

        config["base_model"] = os.fspath(minilm_path())
    return config


@dataclass(frozen=True)
class TrainReport:
    """What :func:`train` did. Evaluations are dicts with ``roc_auc``, ``roc_auc_cosine``,
    ``classification`` (accuracy, precision, recall, f1, threshold), ``ece_before``,
    ``ece_after`` and ``retrieval`` (recall_at_1/5/10, mrr)."""

    run_dir: Path
    """The matcher directory."""
    stop: str
    """``"max_steps"``, ``"early_stopped"`` or ``"cancelled"``."""
    steps: int
    """Optimizer steps run."""
    pairs: dict[str, int]
    """Pairs per split."""
    books: dict[str, int]
    """Books per split."""
    baseline: dict[str, Any] | None
    """The untrained base encoder's cosine on test."""
    test: dict[str, Any] | None
    """The trained, calibrated matcher on test."""
    validation: dict[str, Any] | None
    """The trained matcher on validation (after calibration)."""
    calibration_error: str | None
    """Why calibration failed, when it did."""
    teacher: dict[str, Any] | None = None
    """The cross-encoder teacher trained for distillation in this run (``steps``,
    ``validation_roc_auc``), if one was."""
    topic_probe: dict[str, Any] | None = None
    """Topic recoverable from the trained embeddings (a linear probe fitted on train chunks,
    scored on test chunks: ``accuracy``, ``majority``); lower means less topic shortcut."""
    topic_probe_baseline: dict[str, Any] | None = None
    """The same probe on the untrained base encoder."""
    teacher_gate: dict[str, Any] | None = None
    """With distillation: the teacher's and the bi-encoder's validation ROC-AUC
    (``teacher_validation_roc_auc``, ``untrained_validation_roc_auc``,
    ``trained_validation_roc_auc``) and what the teacher was used for (``distilled``,
    ``rerank``); it is used only where it beats the bi-encoder."""


def train(
    dataset_dir: PathLike,
    run_dir: PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
    **params: Any,
) -> TrainReport:
    """Train a matcher on a prepared dataset into the new directory ``run_dir``, calibrate it
    on validation and evaluate it on test (``run_dir/eval/metrics.json``). An existing
    ``run_dir`` is refused: :func:`resume` continues a stopped run.

    Parameters come from ``config`` (the nested dict of :func:`default_config`, or a
    :class:`~lexforge.config.MatcherTrainConfig`) and keyword arguments, named as the config's
    fields: ``base_model`` (default: the installed all-MiniLM-L6-v2), ``max_steps``,
    ``batch_size``, ``lr``, ``min_lr``, ``frozen_layers``, ``max_seq_length``,
    ``style_features``, ``style_channel`` (a dict: ``buckets``, ``dim``, ``char_ngrams``,
    ``word_ngrams``, ``table_lr_scale``; the learned n-gram channel), ``views`` (a dict:
    ``views``, ``neighbours``, ``books``, ``chunks_per_book``; train on book-balanced batches of
    every training chunk), ``pair_features``, ``projection_dim``, ``supcon``, ``info_nce``,
    ``pairwise``, ``temperature``, ``topics`` + ``adversary``, ``seed``, ... Unknown names
    raise ``TypeError``. Ctrl-C stops after the current step with a checkpoint and raises
    :class:`~lexforge.Interrupted` (a ``KeyboardInterrupt``).
    """
    cfg = json.dumps(_config(params, config))
    return train_job(
        _native.matcher_train,
        (os.fspath(dataset_dir), os.fspath(run_dir), cfg),
        pipeline="matcher",
        report=TrainReport,
        device=device,
        precision=precision,
        progress=progress,
        callback=callback,
    )


def resume(
    run_dir: PathLike,
    max_steps: int | None = None,
    *,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
) -> TrainReport:
    """Continue a matcher run from its last checkpoint: a stopped one (killed, interrupted,
    failed), or a finished one with a higher ``max_steps``."""
    return train_job(
        _native.matcher_resume,
        (os.fspath(run_dir), max_steps),
        pipeline="matcher",
        report=TrainReport,
        device=device,
        precision=precision,
        progress=progress,
        callback=callback,
    )


def default_pipeline_config() -> dict[str, Any]:
    """The default configuration of :func:`pipeline`: ``{"prepare": ..., "matcher": ...}``."""
    config: dict[str, Any] = json.loads(_native.matcher_default_pipeline_config())
    return config


@dataclass(frozen=True)
class PipelineReport:
    """What :func:`pipeline` did."""

    run_dir: Path
    """The pipeline's directory (``dataset/`` and ``matcher/``)."""
    dataset: dict[str, Any] | None
    """The dataset preparation's summary; ``None`` when a complete dataset was reused."""
    matcher: dict[str, Any]
    """The matcher's training report (the fields of :class:`TrainReport`)."""


def pipeline(
    books_dir: PathLike,
    run_dir: PathLike,
    *,
    metadata: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    device: str = DEFAULTS["device"],
    precision: str | None = None,
    progress: bool = True,
    callback: Callable[[Event], None] | None = None,
) -> PipelineReport:
    """Books → prepared dataset → trained, calibrated, evaluated matcher in one call, as
    ``lexforge matcher pipeline``: ``run_dir/dataset`` and ``run_dir/matcher``. Calling it again
    reuses what completed and resumes a stopped matcher. ``config``: the nested dict of
    :func:`default_pipeline_config` (a ``prepare`` and a ``matcher`` table)."""
    full = dict(as_dict(config)) if config is not None else default_pipeline_config()
    full["matcher"] = _with_base_model(dict(full.get("matcher") or default_config()))
    cfg = json.dumps(full)
    books, out = os.fspath(books_dir), os.fspath(run_dir)
    meta = os.fspath(metadata) if metadata is not None else None
    return run_job(
        lambda cb: _native.matcher_pipeline(
            books, out, cfg, metadata=meta, device=device, precision=precision, callback=cb
        ),
        progress=progress,
        callback=callback,
        interrupted=lambda _: "interrupted: call pipeline again to continue",
        result=lambda d: from_fields(PipelineReport, d),
    )


@dataclass(frozen=True)
class PairScore:
    """What :meth:`Matcher.score` says about a pair."""

    probability: float
    """Probability of the same book (calibrated when the matcher has a calibration)."""
    same_book: bool
    """The decision at the calibrated threshold."""
    cosine: float
    """Cosine of the two embeddings."""
    logit: float
    """The raw pair score before calibration."""
    style_similarity: float
    """How close the passages are in style, in [0, 1] (see :meth:`Matcher.style_similarity`)."""


@dataclass(frozen=True)
class SearchHit:
    """A book found by :meth:`Matcher.search`."""

    book: str
    """Book id."""
    cosine: float
    """Cosine between the passage and the book's centroid."""
    rerank: float | None = None
    """The cross-encoder's best logit against the book's closest passages, when reranked."""


class Library:
    """Book centroids (L2-normalized mean passage embeddings) built by
    :meth:`Matcher.library`."""

    def __init__(self, native: _native.Library) -> None:
        self._native = native

    @property
    def books(self) -> list[str]:
        """Book ids, in row order."""
        return self._native.books

    @property
    def model_id(self) -> str:
        """The model that embedded the library (:attr:`Matcher.model_id`); a matcher refuses
        to search a library of another model."""
        return self._native.model_id

    def __len__(self) -> int:
        return len(self._native)

    def __repr__(self) -> str:
        return f"Library({len(self)} books)"


class Matcher:
    """A trained matcher directory, loaded for inference. The GIL is released while it
    computes."""

    def __init__(self, native: _native.Matcher) -> None:
        self._native = native
        self._info: dict[str, Any] = json.loads(native.info_json())

    @classmethod
    def load(
        cls, path: PathLike, device: str = DEFAULTS["device"], precision: str | None = None
    ) -> Matcher:
        """Load a matcher directory (manifest checksums verified; calibrations loaded when
        present). Raises :class:`lexforge.ArtifactError` for a damaged directory."""
        return cls(_native.Matcher.load(os.fspath(path), device=device, precision=precision))

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._info["dim"])

    @property
    def model_id(self) -> str:
        """What identifies the weights that embed: the encoder's content id (a digest of its
        whole weight file) and a digest of the head's weights."""
        return str(self._info["model_id"])

    @property
    def has_teacher(self) -> bool:
        """Whether a cross-encoder teacher was loaded (``teacher/``), for reranking."""
        return bool(self._info["teacher"])

    @property
    def calibrated(self) -> bool:
        """Whether ``calibration.json`` was loaded (or fitted)."""
        return bool(self._info["calibrated"])

    def __repr__(self) -> str:
        i = self._info
        return (
            f"Matcher(path={i['path']!r}, dim={i['dim']}, calibrated={i['calibrated']}, "
            f"style_features={i['head']['head']['style_features']}, device={i['device']!r})"
        )

    def score(self, text1: str, text2: str) -> PairScore:
        """Whether ``text1`` and ``text2`` come from the same book. Texts longer than the
        model reads are truncated (see :meth:`truncated`); an empty text raises
        :class:`lexforge.InvalidInputError`."""
        return self.score_many([(text1, text2)])[0]

    def score_many(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = default("matcher.score_many", "batch_size"),
    ) -> list[PairScore]:
        """:meth:`score` for many pairs, batched."""
        rows = json.loads(self._native.score_many(list(pairs), batch_size=batch_size))
        return [from_fields(PairScore, r) for r in rows]

    def style_similarity(self, text1: str, text2: str) -> float:
        """How close two passages are in style, in [0, 1] (the isotonic map of their cosine
        fitted on validation; ``(cosine + 1) / 2`` without one)."""
        return self._native.style_similarity(text1, text2)

    def truncated(self, text: str) -> bool:
        """Whether ``text`` is longer than the model reads."""
        return self._native.truncated(text)

    def embed(
        self, texts: Sequence[str], batch_size: int = default("encoder.encode", "batch_size")
    ) -> npt.NDArray[np.float32]:
        """``[n, dim]`` float32 unit embeddings."""
        return self._native.embed(list(texts), batch_size=batch_size)

    def library(
        self,
        books: Mapping[str, Sequence[str]],
        batch_size: int = default("matcher.library", "batch_size"),
    ) -> Library:
        """A searchable library from ``{book_id: [passages]}``."""
        items = [(k, list(v)) for k, v in books.items()]
        return Library(self._native.library(items, batch_size=batch_size))

    def library_of_dataset(
        self,
        dataset_dir: PathLike,
        split: str | None = None,
        batch_size: int = default("matcher.library", "batch_size"),
    ) -> Library:
        """A library of a prepared dataset's books (one centroid per book over its chunks),
        only those of ``split`` when given (``lexforge matcher search --library``)."""
        return Library(
            self._native.library_of_dataset(os.fspath(dataset_dir), split, batch_size=batch_size)
        )

    def search(
        self,
        passage: str,
        library: Library,
        k: int = default("matcher.search", "k"),
        *,
        rerank: bool | None = None,
        prefilter: int = default("matcher.search", "prefilter"),
        passages_per_book: int = default("matcher.search", "passages_per_book"),
    ) -> list[SearchHit]:
        """The ``k`` books of ``library`` closest to ``passage``, best first. Two stages: the
        bi-encoder keeps the ``prefilter`` books with the closest centroids, then the
        cross-encoder teacher (``rerank=None``: when the matcher has one) scores the passage
        against each candidate's ``passages_per_book`` closest passages."""
        rows = json.loads(
            self._native.search(
                passage,
                library._native,
                k=k,
                rerank=rerank,
                prefilter=prefilter,
                passages_per_book=passages_per_book,
            )
        )
        return [from_fields(SearchHit, r) for r in rows]

    def evaluate(
        self,
        dataset_dir: PathLike,
        split: str = "test",
        batch_size: int = default("matcher.evaluate", "batch_size"),
    ) -> dict[str, Any]:
        """Accuracy, precision, recall, F1, ROC-AUC, ECE (before/after calibration) and
        passage → book retrieval on a split of a prepared dataset."""
        report: dict[str, Any] = json.loads(
            self._native.evaluate(os.fspath(dataset_dir), split=split, batch_size=batch_size)
        )
        return report

    def calibrate(
        self,
        dataset_dir: PathLike,
        split: str = "validation",
        metric: str = "accuracy",
        batch_size: int = default("matcher.calibrate", "batch_size"),
    ) -> dict[str, Any]:
        """Fit and save ``calibration.json`` (temperature, bias, threshold for ``metric``:
        ``"accuracy"`` or ``"f1"``) and ``style_calibration.json`` on a split."""
        c: dict[str, Any] = json.loads(
            self._native.calibrate(
                os.fspath(dataset_dir), split=split, metric=metric, batch_size=batch_size
            )
        )
        self._info["calibrated"] = True
        return c
