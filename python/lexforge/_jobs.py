"""Running a native job with a progress bar, a user callback and a clean interrupt; building
results from the job's JSON by field name. Every pipeline's training goes through here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, TypeVar

from lexforge import _native
from lexforge.exceptions import Interrupted

Event = dict[str, Any]
T = TypeVar("T")


def tqdm_class() -> Any | None:
    """``tqdm.auto.tqdm`` (a widget in Jupyter, text in a terminal), or ``None`` when tqdm is
    not installed (it is the ``progress`` extra): progress bars are then simply not shown."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm


class Progress:
    """A tqdm bar fed by run events (``tqdm.auto``: a widget in notebooks). The one progress
    adapter of the package: every training function and data preparation use it."""

    def __init__(
        self,
        unit: str = "step",
        desc: str | None = None,
        before_start: tuple[str, str] | None = None,
    ) -> None:
        """``unit`` and ``desc`` label the bar of each loop (from its ``started`` event);
        ``before_start`` = ``(unit, desc)`` of a bar without a total for ``progress`` events
        that come before any ``started`` (data preparation chunks books, then embeds)."""
        self._tqdm = tqdm_class()
        self.bar: Any = None
        self.unit, self.desc, self.before_start = unit, desc, before_start

    def __call__(self, event: Event) -> None:
        if self._tqdm is None:
            return
        kind = event.get("type")
        if kind == "started":
            # A job may run several loops (a matcher's teacher, then the matcher).
            self.close()
            self.bar = self._tqdm(
                total=event.get("total"), unit=self.unit, desc=self.desc, dynamic_ncols=True
            )
        elif kind == "progress" and self.bar is None and self.before_start is not None:
            unit, desc = self.before_start
            self.bar = self._tqdm(unit=unit, desc=desc, dynamic_ncols=True)
            self.bar.n = event["step"]
            self.bar.refresh()
        elif kind == "progress" and self.bar is not None:
            self.bar.n = event["step"]
            m = event.get("metrics", {})
            post = {
                k: f"{m[k]:.4g}" for k in ("loss", "lr", "tokens_per_s") if m.get(k) is not None
            }
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()
        elif kind == "eval" and self.bar is not None:
            loss = event.get("metrics", {}).get("val_loss")
            if loss is not None:
                self.bar.write(f"step {event['step']}: val_loss {loss:.4f}")
        elif kind in ("completed", "failed", "cancelled") and self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def from_fields(cls: type[T], data: dict[str, Any]) -> T:
    """``cls`` (a dataclass) from a result dict by field name: missing optional fields take
    their defaults, extra keys are ignored (a newer native library may report more), and
    fields declared as :class:`~pathlib.Path` get one."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            value = data[f.name]
            is_path = f.type in (Path, "Path") and value is not None
            values[f.name] = Path(value) if is_path else value
    return cls(**values)


def run_job(
    call: Callable[[Callable[[Event], None] | None], tuple[str, bool]],
    *,
    progress: bool | Progress,
    callback: Callable[[Event], None] | None,
    interrupted: Callable[[Any], str],
    result: Callable[[dict[str, Any]], T],
) -> T:
    """Calls ``call`` with one event callback feeding a progress bar (when ``progress``) and
    ``callback`` (``None`` when neither is wanted; ``progress`` may be a configured
    :class:`Progress`), closes the bar, flushes the native logs,
    and returns ``result`` of the job's parsed JSON. When Ctrl-C stopped the job (after a
    checkpoint) it raises :class:`~lexforge.Interrupted` instead, with the message
    ``interrupted(value)``, the run directory and the result ``value``."""
    bar = progress if isinstance(progress, Progress) else (Progress() if progress else None)

    def both(event: Event) -> None:
        if bar is not None:
            bar(event)
        if callback is not None:
            callback(event)

    try:
        text, stopped = call(both if (bar is not None or callback is not None) else None)
    finally:
        if bar is not None:
            bar.close()
        _native.flush_logs(1.0)
    value = result(json.loads(text))
    if stopped:
        run_dir = getattr(value, "run_dir", None)
        raise Interrupted(interrupted(value), run_dir, value)
    return value


def train_job(
    native: Callable[..., tuple[str, bool]],
    args: tuple[Any, ...],
    *,
    pipeline: str,
    report: type[T],
    device: str,
    precision: str | None,
    progress: bool,
    callback: Callable[[Event], None] | None,
) -> T:
    """A pipeline's ``train`` or ``resume``: ``native(*args, device=..., precision=...,
    callback=...)`` through :func:`run_job`, its result built as ``report`` by field name. An
    interrupt raises :class:`~lexforge.Interrupted` naming ``lexforge.<pipeline>.resume``."""

    def interrupted(r: Any) -> str:
        return (
            f"interrupted: the run stopped after step {r.steps} and kept a checkpoint; "
            f"continue with lexforge.{pipeline}.resume({str(r.run_dir)!r})"
        )

    return run_job(
        lambda cb: native(*args, device=device, precision=precision, callback=cb),
        progress=progress,
        callback=callback,
        interrupted=interrupted,
        result=lambda d: from_fields(report, d),
    )
