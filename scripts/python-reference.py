"""Regenerates the "Reference" section of docs/python.md from the installed package's
docstrings: every public name of each module, its kind and the first paragraph of its
docstring. Run it after changing the public API (tests/python/test_docs.py fails on a name
that is missing or undocumented):

    .venv/bin/python scripts/python-reference.py
"""

from __future__ import annotations

import importlib
import inspect
import typing
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"
MODULES = [
    "lexforge",
    "lexforge.config",
    "lexforge.lm",
    "lexforge.tokenizers",
    "lexforge.encoder",
    "lexforge.data",
    "lexforge.matcher",
    "lexforge.semantic",
    "lexforge.plot",
    "lexforge.exceptions",
]
HEADING = "## Reference\n"
# Type aliases carry no docstring of their own; their meaning, by name.
ALIASES = {
    "lexforge.tokenizers.Method": "a tokenizer training method.",
    "lexforge.tokenizers.Normalization": "Unicode normalization before tokenizing.",
}


def summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n", 1)[0]
    return " ".join(first.split()).replace("|", "\\|")


def section() -> str:
    out = [HEADING, "\nEvery public name, by module (each has a docstring; `help()` shows it):\n"]
    for name in MODULES:
        module = importlib.import_module(name)
        rows = []
        for attr in sorted(module.__all__):
            obj = getattr(module, attr)
            if inspect.ismodule(obj) or attr.startswith("__") or attr.isupper():
                continue
            if name == "lexforge" and getattr(obj, "__module__", "lexforge") != "lexforge":
                continue  # a re-export, listed under its own module
            full = f"{name}.{attr}"
            if typing.get_origin(obj) is typing.Literal:
                spelled = repr(obj).replace("typing.", "")
                rows.append(f"| `{full}` | type alias | `{spelled}`: {ALIASES[full]} |")
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            rows.append(f"| `{full}` | {kind} | {summary(obj)} |")
        out.append(f"\n### `{name}`\n\n| name | kind | summary |\n|---|---|---|\n")
        out.append("\n".join(rows) + "\n")
    return "".join(out)


def main() -> None:
    text = DOC.read_text(encoding="utf-8")
    head = text.split(HEADING, 1)[0]
    DOC.write_text(head + section(), encoding="utf-8")


if __name__ == "__main__":
    main()
