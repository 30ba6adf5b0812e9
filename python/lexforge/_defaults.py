"""The defaults the CLI, Python and Rust share, read once from the native library
(``lexforge::api_defaults``): Python's signatures take their default values from here, so a
default is declared in one place, in Rust."""

from __future__ import annotations

import json
from typing import Any

from lexforge import _native

DEFAULTS: dict[str, Any] = json.loads(_native.api_defaults())


def default(operation: str, argument: str) -> Any:
    """The default of ``argument`` of ``operation`` (``"matcher.search"``, ``"k"``)."""
    return DEFAULTS[operation][argument]
