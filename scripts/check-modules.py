#!/usr/bin/env python3
"""Checks the module shape of every library crate (docs/architecture.md, "Modules").

1. Size: no module file holds more than LIMIT lines of non-test code (blank lines and the
   `#[cfg(test)]` module at the end of a file do not count), unless ALLOWED below states why.
2. Cycles: the top-level modules of a crate (`src/x.rs` or `src/x/`) form no import cycle.
   An edge a -> b is any `crate::b` path written in a file of module a (including `use
   crate::{b, ...}` groups); `super::` inside a submodule stays within its parent.

Prints every breach and exits 1 if there is one. Run from the project root:
`python3 scripts/check-modules.py`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LIMIT = 700

# Modules allowed above LIMIT, each with the reason (repeated in docs/architecture.md).
ALLOWED: dict[str, str] = {}

# The binary and the bindings are not libraries: they parse, call and print.
NOT_LIBRARIES = {"lexforge-cli"}


def code_lines(text: str) -> int:
    """Non-blank lines before the file's `#[cfg(test)]` test module."""
    lines = text.splitlines()
    end = len(lines)
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines):
            nxt = lines[i + 1].strip()
            if nxt.startswith("mod ") and not line.startswith(" "):
                end = i
                break
    return sum(1 for line in lines[:end] if line.strip())


def top_module(src: Path, file: Path) -> str | None:
    rel = file.relative_to(src)
    if rel.parts[0] in ("lib.rs", "main.rs"):
        return None
    return rel.parts[0].removesuffix(".rs")


GROUP = re.compile(r"crate::\{([^}]*)\}", re.S)
PATH = re.compile(r"crate::([a-z_][a-z0-9_]*)")


def edges(text: str) -> set[str]:
    # Drop comments, so prose such as "see crate::x" does not count.
    text = re.sub(r"//[^\n]*", "", text)
    out = set(PATH.findall(text))
    for group in GROUP.findall(text):
        for item in group.split(","):
            name = item.strip().split("::")[0].strip()
            if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                out.add(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems: list[str] = []
    crates = sorted(p for p in (root / "crates").iterdir() if (p / "src").is_dir())
    crates.append(root / "bindings" / "python")
    for crate in crates:
        if crate.name in NOT_LIBRARIES:
            continue
        src = crate / "src"
        graph: dict[str, set[str]] = {}
        for file in sorted(src.rglob("*.rs")):
            text = file.read_text(encoding="utf-8")
            rel = file.relative_to(root).as_posix()
            n = code_lines(text)
            if n > LIMIT and rel not in ALLOWED:
                problems.append(f"{rel}: {n} lines of non-test code (limit {LIMIT})")
            module = top_module(src, file)
            if module is None:
                continue
            graph.setdefault(module, set())
            graph[module] |= {e for e in edges(text) if e != module}
        for comp in cycles(graph):
            problems.append(f"{crate.name}: import cycle between modules {', '.join(comp)}")
    for p in problems:
        print("check-modules:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
