"""docs/python.md: its examples run, in order, and its reference lists every public name,
each with a docstring."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python.md"


def _reference_script() -> Any:
    spec = importlib.util.spec_from_file_location("python_reference", REFERENCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = ROOT / "scripts" / "python-reference.py"
MODULES: list[str] = _reference_script().MODULES


def test_the_examples_run(
    books: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 8
    monkeypatch.setenv("LEXFORGE_BOOKS", str(books))
    monkeypatch.setenv("LEXFORGE_FIXTURES", str(ROOT / "tests" / "fixtures"))
    monkeypatch.setenv("LEXFORGE_WORK", str(tmp_path))
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"docs/python.md block {i}", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"block {i} failed: {e!r}\n{code}") from e
    assert "ECE" in capsys.readouterr().out
    assert os.listdir(tmp_path)


def test_every_public_name_is_documented_and_listed() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing_doc, missing_ref = [], []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.ismodule(obj) or attr.startswith("__") or attr.isupper():
                continue
            if name == "lexforge" and getattr(obj, "__module__", "lexforge") != "lexforge":
                continue  # a re-export, listed under its own module
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
                missing_doc.append(f"{name}.{attr}")
            if f"`{name}.{attr}`" not in text:
                missing_ref.append(f"{name}.{attr}")
            if inspect.isclass(obj):
                for m_name, member in vars(obj).items():
                    if m_name.startswith("_") or not callable(member):
                        continue
                    if not inspect.getdoc(member):
                        missing_doc.append(f"{name}.{attr}.{m_name}")
    assert not missing_doc, f"no docstring: {missing_doc}"
    assert not missing_ref, f"not in docs/python.md: {missing_ref}"


def test_the_reference_section_is_up_to_date() -> None:
    """scripts/python-reference.py regenerates it; rerun it after an API change."""
    expected = _reference_script().section()
    assert DOC.read_text(encoding="utf-8").endswith(expected)
