"""Running a native job with a progress bar, a user callback and a clean interrupt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Protocol

from lexforge import _native
from lexforge.exceptions import Interrupted

Event = dict[str, Any]


def tqdm_class() -> Any | None:
    """``tqdm.auto.tqdm`` (a widget in Jupyter, text in a terminal), or ``None`` when tqdm is
    not installed (it is the ``progress`` extra): progress bars are then simply not shown."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm


class _Bar(Protocol):
    def __call__(self, event: Event) -> None: ...
    def close(self) -> None: ...


def run_job(
    call: Callable[[Callable[[Event], None] | None], tuple[str, bool]],
    bar: _Bar | None,
    callback: Callable[[Event], None] | None,
    interrupted: str,
    run_dir: Path | None = None,
) -> str:
    """Calls ``call`` with one event callback feeding ``bar`` and ``callback`` (``None`` when
    neither is given), closes the bar, and returns the job's JSON result; when Ctrl-C stopped
    the job (after a checkpoint), raises :class:`~lexforge.Interrupted` with the message
    ``interrupted``, ``run_dir`` and the parsed result instead."""

    def both(event: Event) -> None:
        if bar is not None:
            bar(event)
        if callback is not None:
            callback(event)

    try:
        result, stopped = call(both if (bar or callback) else None)
    finally:
        if bar is not None:
            bar.close()
        _native.flush_logs(1.0)
    if stopped:
        raise Interrupted(interrupted, run_dir, json.loads(result))
    return result
