"""The exceptions lexforge raises.

Every error is a :class:`LexforgeError`; each family of the Rust core has one subclass.
Where a builtin exception means the same thing, the class derives from it too, so
``except FileNotFoundError`` and ``except ValueError`` work as they do elsewhere in Python.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "CancelledError",
    "DeviceError",
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
