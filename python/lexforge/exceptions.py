"""The exceptions lexforge raises.

Every error is a :class:`LexforgeError`; each family of the Rust core has one subclass.
Where a builtin exception means the same thing, the class derives from it too, so
``except FileNotFoundError`` and ``except ValueError`` work as they do elsewhere in Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "ArtifactError",
    "CancelledError",
    "DeviceError",
    "Interrupted",
    "InvalidInputError",
    "LexforgeError",
    "LexforgeIOError",
    "LexforgeNotFoundError",
]


class LexforgeError(Exception):
    """Base class of every lexforge error."""


class InvalidInputError(LexforgeError, ValueError):
    """A parameter, name or string that is not acceptable (a bad device string, a run id
    containing ``..`` or ``/``, an out-of-range value)."""


class DeviceError(LexforgeError):
    """A device or precision that cannot be used here: the backend is not compiled in, no
    device was found, or the device cannot compute in the requested precision."""


class ArtifactError(LexforgeError):
    """An artifact or manifest that is damaged (truncated, altered, missing), foreign, or of an
    unsupported schema version."""


class LexforgeIOError(LexforgeError, OSError):
    """An operating-system error on a path (permission denied, disk full, ...)."""


class LexforgeNotFoundError(LexforgeIOError, FileNotFoundError):
    """A path that does not exist."""


class CancelledError(LexforgeError):
    """Work stopped because it was cancelled."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or Jupyter's stop button) stopped a job cleanly: it finished its current step,
    wrote a checkpoint, and then raised this. A :class:`KeyboardInterrupt`, so scripts stop as
    they would on any Ctrl-C; catch it to keep going.

    ``run_dir`` is the run to continue (``lexforge.lm.resume(run_dir)``, or train the matcher
    or semantic encoder again into the same directory); ``result`` is what the job returned
    when it stopped (for a language model, the cancelled :class:`~lexforge.lm.LmRun`).
    """

    def __init__(self, message: str, run_dir: Path | None = None, result: Any = None) -> None:
        super().__init__(message)
        self.run_dir = run_dir
        self.result = result
