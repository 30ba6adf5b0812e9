"""Pictures of runs and models, with matplotlib (an optional dependency:
``pip install lexforge[plot]``).

Every function draws on ``ax`` when given (else a new figure) and returns the
:class:`matplotlib.axes.Axes`, so plots compose with the rest of a notebook::

    import lexforge.plot
    ax = lexforge.plot.training_curves("runs/quickstart")
    ax.figure.savefig("curves.png")

The data helpers (:func:`read_events`, :func:`reliability_bins`, :func:`code_usage`,
:func:`project_2d`) need only numpy and are what the plots draw.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "code_usage",
    "codebook_usage",
    "embedding_projection",
    "project_2d",
    "read_events",
    "reliability_bins",
    "reliability_diagram",
    "training_curves",
]

PathLike = Union[str, "os.PathLike[str]"]


def _axes(ax: Axes | None) -> Axes:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("lexforge.plot needs matplotlib: pip install 'lexforge[plot]'") from e
    if ax is not None:
        return ax
    _, new = plt.subplots()
    return new


def read_events(run: PathLike) -> list[dict[str, Any]]:
    """The events of a run, oldest first: ``run`` is a run directory (its ``events.jsonl``)
    or an ``events.jsonl`` file. Each event is a dict with ``type``, ``time`` and the fields
    of its kind (``progress``: ``step``, ``metrics``; ``eval``: ``step``, ``metrics``; ...).
    A truncated last line (a run killed mid-write) is skipped."""
    path = Path(run)
    if path.is_dir():
        path = path / "events.jsonl"
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def training_curves(
    run: PathLike | Sequence[dict[str, Any]],
    ax: Axes | None = None,
    train_metric: str = "loss",
    eval_metric: str = "val_loss",
) -> Axes:
    """Training loss per step (``progress`` events) and validation loss per evaluation
    (``eval`` events) of a run directory, an ``events.jsonl`` file, or events already read.
    A run resumed after an interruption continues the same curve."""
    events = read_events(run) if isinstance(run, (str, os.PathLike)) else list(run)
    ax = _axes(ax)
    for kind, metric, style in (
        ("progress", train_metric, "-"),
        ("eval", eval_metric, "o-"),
    ):
        points = sorted(
            {
                e["step"]: e["metrics"][metric]
                for e in events
                if e.get("type") == kind and e.get("metrics", {}).get(metric) is not None
            }.items()
        )
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, style, label=f"{metric} ({kind})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training curves")
    ax.legend()
    return ax


def reliability_bins(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, bins: int = 10
) -> dict[str, npt.NDArray[np.float64]]:
    """Calibration by equal-width probability bins: for each non-empty bin, the mean predicted
    probability (``confidence``), the fraction of positives (``accuracy``) and the row count
    (``count``); plus ``ece``, the expected calibration error (count-weighted mean gap), as a
    one-element array."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"{p.size} probabilities and {y.size} labels: need as many, and some")
    if bins < 1:
        raise ValueError("bins must be at least 1")
    which = np.minimum((p * bins).astype(int), bins - 1)
    conf, acc, count = [], [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            conf.append(p[mask].mean())
            acc.append(y[mask].mean())
            count.append(mask.sum())
    c, a, n = np.array(conf), np.array(acc), np.array(count, dtype=np.float64)
    ece = float((n * np.abs(c - a)).sum() / n.sum())
    return {"confidence": c, "accuracy": a, "count": n, "ece": np.array([ece])}


def reliability_diagram(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    bins: int = 10,
    ax: Axes | None = None,
) -> Axes:
    """Reliability diagram of a calibrated matcher: predicted probability that two passages are
    from the same book (``PairScore.probability``) against how often they are, per bin, with the
    diagonal of perfect calibration and the ECE in the title."""
    r = reliability_bins(probabilities, labels, bins)
    ax = _axes(ax)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot(r["confidence"], r["accuracy"], "o-", label="matcher")
    for x, y, n in zip(r["confidence"], r["accuracy"], r["count"]):
        ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (same book)")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"reliability (ECE {float(r['ece'][0]):.3f})")
    ax.legend(loc="upper left")
    return ax


def code_usage(ids: npt.ArrayLike, sizes: Sequence[int]) -> list[npt.NDArray[np.int64]]:
    """How often each code of each level is used by ``ids`` (``[n, levels]`` semantic IDs):
    one count array of length ``sizes[level]`` per level."""
    a = np.asarray(ids, dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != len(sizes):
        raise ValueError(f"ids of shape {a.shape}; expected [n, {len(sizes)}]")
    out = []
    for level, size in enumerate(sizes):
        col = a[:, level]
        if col.size and (col.min() < 0 or col.max() >= size):
            raise ValueError(f"level {level} has a code outside 0..{size}")
        out.append(np.bincount(col, minlength=size))
    return out


def codebook_usage(
    ids: npt.ArrayLike, sizes: Sequence[int], axes: Sequence[Axes] | None = None
) -> list[Axes]:
    """Bars of code usage per level of semantic IDs (``[n, levels]``, e.g. the values of
    ``SemanticEncoder.ids``), one panel per level, titled with the share of codes in use."""
    counts = code_usage(ids, sizes)
    if axes is None:
        import matplotlib.pyplot as plt

        _, grid = plt.subplots(1, len(sizes), figsize=(3 * len(sizes), 2.6), squeeze=False)
        axes = list(grid[0])
    for level, (ax, c) in enumerate(zip(axes, counts)):
        ax.bar(np.arange(len(c)), c)
        used = int((c > 0).sum())
        ax.set_title(f"level {level}: {used}/{len(c)} codes used")
        ax.set_xlabel("code")
    axes[0].set_ylabel("corpora")
    return list(axes)


def project_2d(vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The first two principal components of ``vectors`` (``[n, dim]``), ``[n, 2]``."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 row vectors, got shape {x.shape}")
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out: npt.NDArray[np.float64] = x @ vt[:2].T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


def embedding_projection(
    vectors: npt.ArrayLike,
    labels: Sequence[str],
    ax: Axes | None = None,
) -> Axes:
    """Corpus (or sentence) embeddings projected to 2-D (PCA), one colour per label."""
    xy = project_2d(vectors)
    if len(labels) != xy.shape[0]:
        raise ValueError(f"{len(labels)} labels for {xy.shape[0]} vectors")
    ax = _axes(ax)
    for label in sorted(set(labels)):
        mask = np.array([lab == label for lab in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=14, label=label)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("embeddings (PCA)")
    if len(set(labels)) <= 12:
        ax.legend(fontsize="small")
    return ax
