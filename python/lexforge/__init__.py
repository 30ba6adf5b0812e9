"""lexforge: train and serve text models on the burn deep-learning framework.

The heavy lifting happens in Rust (``lexforge._native``); this package re-exports a curated,
typed API.
"""

from __future__ import annotations

import atexit
import json
import os
from typing import Any, TypedDict, Union

from lexforge import _native, data, encoder, lm, matcher, semantic
from lexforge.encoder import SentenceEncoder
from lexforge.exceptions import (
    ArtifactError,
    CancelledError,
    DeviceError,
    Interrupted,
    InvalidInputError,
    LexforgeError,
    LexforgeIOError,
    LexforgeNotFoundError,
)
from lexforge.lm import LanguageModel
from lexforge.matcher import Matcher
from lexforge.semantic import SemanticEncoder
from lexforge.tokenizers import Tokenizer

__version__: str = _native.__version__
BURN_VERSION: str = _native.BURN_VERSION

__all__ = [
    "BURN_VERSION",
    "ArtifactError",
    "BackendInfo",
    "CancelledError",
    "Interrupted",
    "DeviceError",
    "InvalidInputError",
    "LanguageModel",
    "LexforgeError",
    "LexforgeIOError",
    "LexforgeNotFoundError",
    "Matcher",
    "SemanticEncoder",
    "SentenceEncoder",
    "Tokenizer",
    "__version__",
    "configure_device",
    "data",
    "devices",
    "encoder",
    "flush_logs",
    "get_num_threads",
    "lm",
    "matcher",
    "resolve_device",
    "semantic",
    "set_num_threads",
    "verify_run_dir",
    "write_run_dir",
]

PathLike = Union[str, "os.PathLike[str]"]


class BackendInfo(TypedDict):
    """One backend as :func:`devices` reports it."""

    name: str
    """Backend name, also its device string (``flex``, ``ndarray``, ``wgpu``, ``cuda``)."""
    feature: str
    """The cargo feature that compiles it in."""
    compiled: bool
    """Whether this build includes it."""
    usable: bool
    """Whether a device was found and computed a test sum correctly."""
    detail: str
    """The device found, or why not."""
    auto: bool
    """Whether ``device="auto"`` picks it here."""
    auto_reason: str
    """Why ``auto`` picks it or not (CUDA, else a hardware GPU adapter, else the CPU)."""
    precisions: list[str]
    """The precisions (``f32``, ``f16``, ``bf16``) the device computes in; empty if unusable."""


def devices() -> list[BackendInfo]:
    """List every backend lexforge knows, whether it is compiled in and usable here.

    >>> any(b["usable"] for b in devices())
    True
    """
    return [BackendInfo(**d) for d in _native.devices()]  # type: ignore[typeddict-item]


def resolve_device(spec: str = "auto") -> str:
    """Check a device string and return its canonical form.

    Raises :class:`InvalidInputError` if ``spec`` does not parse and :class:`DeviceError` if
    its backend is not compiled in or has no device here.

    >>> resolve_device("CPU")
    'cpu'
    """
    return _native.resolve_device(spec)


def configure_device(device: str = "auto", precision: str = "auto") -> str:
    """Make ``device`` compute in ``precision`` (``auto`` = ``f32``, ``f32``, ``f16``,
    ``bf16``) for the rest of this process, and return the concrete precision.

    Call it first: a device's float type is fixed when it is first used, so everything that
    later runs on that device (loading an encoder, training a matcher) computes in this
    precision; training then keeps f32 master weights. Raises :class:`InvalidInputError` for
    an unknown precision and :class:`DeviceError` when the device does not compute in it (the
    message lists the precisions it does) or was already used in another precision.
    """
    return _native.configure_device(device, precision)


def set_num_threads(n: int) -> None:
    """Limit every later native call (encoding, training, tokenizing, search) to ``n``
    compute threads, like :func:`torch.set_num_threads`; ``0`` restores the default, one per
    core.

    Each Python thread gets its own pool of ``n`` threads, so with ``set_num_threads(1)`` two
    Python threads encoding at once run on two cores side by side. Raises ``ValueError`` for
    a negative ``n``.
    """
    _native.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads a native call computes on (see :func:`set_num_threads`).

    >>> get_num_threads() >= 1
    True
    """
    return _native.get_num_threads()


def flush_logs(timeout: float = 1.0) -> bool:
    """Wait until every log record lexforge emitted so far has reached :mod:`logging`, or
    ``timeout`` seconds passed; returns whether everything was delivered.

    lexforge's Rust code logs through ``tracing``; each event becomes a record on the
    ``lexforge.<crate>.<module>`` logger (``lexforge.train.engine``, ``lexforge.tokenizers``…)
    with its structured fields appended to the message and in ``record.lexforge_fields``.
    Records are handed over by a background thread, so they arrive shortly after the event;
    jobs (training, preparing data) flush before they return. Levels are Python's: configure
    them with ``logging.getLogger("lexforge").setLevel(...)``. The environment variable
    ``LEXFORGE_LOG`` (``tracing`` filter syntax, default ``warn,lexforge=debug``) selects what
    is emitted at all.
    """
    return _native.flush_logs(timeout)


atexit.register(_native.close_logs)


def verify_run_dir(run_dir: PathLike) -> dict[str, Any]:
    """Verify a run directory and return its manifest.

    Every file listed in ``manifest.json`` must be present with its recorded size and sha256.
    Raises :class:`ArtifactError` (damaged, missing or foreign files) or
    :class:`LexforgeNotFoundError` (no manifest).
    """
    manifest: dict[str, Any] = json.loads(_native.verify_run_dir(os.fspath(run_dir)))
    return manifest


def write_run_dir(
    root: PathLike,
    run_id: str,
    kind: str,
    files: dict[str, bytes],
    config: dict[str, Any] | None = None,
) -> str:
    """Write a run directory ``root/run_id`` holding ``files`` and a manifest, atomically.

    Artifact names are relative paths (``eval/metrics.json``); a name or run id that could
    escape the directory (``..``, absolute, ``\\``) raises :class:`InvalidInputError`. The
    directory appears only once complete. Returns its path.
    """
    path = _native.write_run_dir(
        os.fspath(root),
        run_id,
        kind,
        list(files.items()),
        None if config is None else json.dumps(config),
    )
    return os.fspath(path)
