"""docs/api.md: every Python name of its table exists, every CLI subcommand runs `--help`, and
each default it names comes out the same from Rust (`lexforge._native.api_defaults`), Python
(the signatures) and the CLI (clap's `[default: ...]`). The Rust column is compiled by
crates/lexforge/tests/api_table.rs."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lexforge import _native

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "debug" / "lexforge"
TABLE = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def rows() -> list[dict[str, str]]:
    out = []
    for line in TABLE.splitlines():
        if not line.startswith("| ") or line.startswith("| operation"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        op, rust, py, cli, defaults = cells
        out.append(
            {
                "op": op,
                "rust": rust.strip("`"),
                "python": py.strip("`"),
                "cli": cli.strip("`"),
                "defaults": defaults,
            }
        )
    return out


ROWS = rows()


def resolve(dotted: str) -> Any:
    """``lexforge.matcher.Matcher.search`` → the object, importing the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def cli_help(command: str) -> str:
    args = command.split()[1:]
    done = subprocess.run([str(CLI), *args, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command} --help: {done.stderr}"
    return done.stdout


def cli_default(help_text: str, argument: str) -> str | None:
    """The ``[default: V]`` of ``--argument`` (or ``-k`` for one letter) in clap's long help."""
    flag = f"-{argument}" if len(argument) == 1 else "--" + argument.replace("_", "-")
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"\s*(-\w, )?{re.escape(flag)}\b", line):
            for follow in lines[i : i + 12]:
                if follow is not line and re.match(r"\s*-", follow):
                    break
                m = re.search(r"\[default: ([^\]]+)\]", follow)
                if m:
                    return m.group(1)
            return None
    return None


def test_the_table_covers_every_verb_of_every_pipeline() -> None:
    ops = {r["op"] for r in ROWS}
    for pipeline in ("lm", "matcher", "semantic"):
        for verb in ("train", "resume", "pipeline" if pipeline != "lm" else "evaluate"):
            assert f"{pipeline} {verb}" in ops
    assert {"semantic encode", "semantic decode", "semantic search", "matcher search"} <= ops
    assert len(ROWS) >= 30


@pytest.mark.parametrize("row", ROWS, ids=[r["op"] for r in ROWS])
def test_every_python_name_exists(row: dict[str, str]) -> None:
    obj = resolve(row["python"])
    assert callable(obj), row["python"]


@pytest.mark.skipif(not CLI.exists(), reason="the CLI is built by `cargo test` (CI runs it first)")
@pytest.mark.parametrize("row", [r for r in ROWS if r["cli"]], ids=lambda r: r["op"])
def test_every_cli_subcommand_exists(row: dict[str, str]) -> None:
    assert row["cli"].startswith("lexforge ")
    text = cli_help(row["cli"])
    assert "Usage:" in text
    # The global flags every subcommand takes.
    for flag in ("--device", "--precision", "--json"):
        assert flag in text, f"{row['cli']} lacks {flag}"


def defaulted() -> list[tuple[dict[str, str], str, str]]:
    out = []
    for r in ROWS:
        if not r["defaults"]:
            continue
        section, args = r["defaults"].split(": ")
        for a in args.split(", "):
            out.append((r, section, a))
    return out


@pytest.mark.parametrize(
    ("row", "section", "argument"),
    defaulted(),
    ids=[f"{s}.{a}" for _, s, a in defaulted()],
)
def test_defaults_agree_across_rust_python_and_the_cli(
    row: dict[str, str], section: str, argument: str
) -> None:
    rust = json.loads(_native.api_defaults())[section][argument]
    fn = resolve(row["python"])
    py = inspect.signature(fn).parameters[argument].default
    assert py == rust, f"Python {row['python']}({argument}={py!r}), Rust {rust!r}"
    if not CLI.exists():
        pytest.skip("the CLI is built by `cargo test`")
    cli = cli_default(cli_help(row["cli"]), argument)
    if cli is None:
        # Only arguments the CLI takes are compared there.
        assert f"--{argument.replace('_', '-')}" not in cli_help(row["cli"]), (
            f"{row['cli']} takes --{argument} without a default"
        )
        return
    assert type(rust)(cli) == rust, f"CLI {row['cli']} {argument} = {cli}, Rust {rust!r}"


def test_the_device_default_is_the_same_everywhere() -> None:
    rust = json.loads(_native.api_defaults())["device"]
    for name in ("lexforge.lm.train", "lexforge.matcher.train", "lexforge.semantic.train"):
        assert inspect.signature(resolve(name)).parameters["device"].default == rust
    if CLI.exists():
        assert cli_default(cli_help("lexforge lm train"), "device") == rust
