"""Flat keyword arguments → the nested configuration dicts the Rust pipelines read.

The keywords are derived from the config schema itself (its default value, as the Rust type
serializes it), never kept by hand: every field is reachable as its path joined with ``_``
(``train_max_steps``, ``teacher_train_lr``), and as its bare name (``max_steps``) when no
other field of the same name sits at the same or a shallower depth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lexforge.config import as_dict


def flat_places(defaults: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The keyword → path map of the config whose default value is ``defaults``. Sections
    (dicts) are walked; every other value (numbers, strings, lists, ``None`` for an optional
    section) is a field."""
    leaves: list[tuple[str, ...]] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, (*path, key))
            else:
                leaves.append((*path, key))

    walk(as_dict(defaults), ())
    places = {"_".join(p): p for p in leaves}
    by_name: dict[str, list[tuple[str, ...]]] = {}
    for p in leaves:
        by_name.setdefault(p[-1], []).append(p)
    for name, paths in by_name.items():
        shallowest = min(len(p) for p in paths)
        top = [p for p in paths if len(p) == shallowest]
        if len(top) == 1 and name not in places:
            places[name] = top[0]
    return places


def apply_params(
    params: Mapping[str, Any],
    places: Mapping[str, tuple[str, ...]],
    base: Mapping[str, Any],
) -> dict[str, Any]:
    """A deep copy of ``base`` (a dict or :class:`~lexforge.config.Config`) with each keyword
    of ``params`` written at its place (``places[key]`` is the path of nested keys). An
    unknown keyword raises ``TypeError`` naming the known ones."""
    out = as_dict(base)
    for key, value in params.items():
        if key not in places:
            raise TypeError(
                f"unknown parameter {key!r}; expected one of {', '.join(sorted(places))}"
            )
        path = places[key]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out
