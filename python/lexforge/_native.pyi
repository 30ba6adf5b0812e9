# Type stubs of the native extension module (checked by mypy.stubtest in CI).

import os
from pathlib import Path
from typing import Any

__all__ = [
    "__version__",
    "BURN_VERSION",
    "devices",
    "resolve_device",
    "verify_run_dir",
    "write_run_dir",
]

__version__: str
BURN_VERSION: str

def devices() -> list[dict[str, Any]]: ...
def resolve_device(spec: str) -> str: ...
def verify_run_dir(run_dir: str | os.PathLike[str]) -> str: ...
def write_run_dir(
    root: str | os.PathLike[str],
    run_id: str,
    kind: str,
    files: list[tuple[str, bytes]],
    config_json: str | None = None,
) -> Path: ...
