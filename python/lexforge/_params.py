"""Flat keyword arguments → the nested configuration dicts the Rust pipelines read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lexforge.config import as_dict


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
