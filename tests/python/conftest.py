"""Shared fixtures: the book corpus beside the repository."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

BOOKS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "gutenberg" / "books"

SMALL_BOOKS = [
    BOOKS / "william_blake" / "poems_of_william_blake.txt",
    BOOKS / "william_shakespeare" / "julius_caesar.txt",
    BOOKS / "thomas_paine" / "common_sense.txt",
    BOOKS / "lewis_carroll" / "alices_adventures_in_wonderland.txt",
    BOOKS / "william_shakespeare" / "hamlet.txt",
    BOOKS / "h_g_wells" / "the_time_machine.txt",
]


@pytest.fixture(scope="session")
def books() -> Path:
    assert BOOKS.is_dir(), f"the shared book corpus is missing at {BOOKS}"
    return BOOKS


@pytest.fixture(scope="session")
def small_books(books: Path) -> list[Path]:
    return SMALL_BOOKS


def copy_library(books: Path, root: Path, rels: Iterable[str]) -> Path:
    """A book library at ``root``: the shared-corpus books ``rels`` (``author/title.txt``),
    copied with their author folders. Returns ``root``."""
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(books / rel, root / rel)
    return root
