"""Rewrites the generated tables of docs/benchmarks.md from the JSON of one ``run_all.sh`` run.

Each ``benches/compare_*.py --json`` file (the schema of ``benches/benchlib.py``) replaces,
in the page, everything between ``<!-- run_all:<bench> -->`` and ``<!-- /run_all:<bench> -->``
with one line saying when, where, with what and how the numbers were measured, and one table
(task | threads | peer | lexforge | ratio [spread]). Hand-written text outside the markers is
left alone. Idempotent: the same files give the same page. Fails (exit 1) when a file's
markers are missing or malformed, and, unless ``--partial``, when a marker pair of the page has
no file (so the page never mixes runs). Standard library only::

    python benches/run_all_tables.py target/bench-results/DATE/TIME/*.json
    python benches/run_all_tables.py --check FILES...   # exit 1 if the page would change
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from benchlib import fmt as number
from benchlib import ratio_text

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
MARKER = re.compile(r"<!-- (/?)run_all:([A-Za-z0-9_-]+) -->")


def _portable(command: str) -> str:
    """``command`` with an absolute interpreter path shortened to its name (results recorded
    before the benches stopped writing one): the page carries no machine's paths."""
    return re.sub(r"^\S*/(python[\d.]*)(?=\s)", r"\1", command)


REQUIRED = ("bench", "date", "machine", "versions", "command", "rounds", "threads")


class TableError(Exception):
    pass


def load(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TableError(f"{path}: cannot read the results: {e}") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise TableError(f"{path}: not a benchlib result (missing {', '.join(missing)})")
    if not data["threads"]:
        raise TableError(f"{path}: no thread count was measured")
    return data


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ratio(r: dict[str, Any]) -> str:
    """The ratio in bold, its spread after it (`benchlib.ratio_text`)."""
    text = ratio_text(r)
    if text == "—":
        return text
    value, spread = text.split(" ", 1)
    return f"**{value}** {spread}"


def machine_text(m: dict[str, Any]) -> str:
    parts = [str(m.get("cpu", "unknown CPU"))]
    if m.get("cores"):
        parts.append(f"{m['cores']} cores")
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']} GiB")
    if m.get("os"):
        parts.append(str(m["os"]))
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    if m.get("loadavg_at_start"):
        parts.append(f"load {m['loadavg_at_start'][0]} at start")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if m.get(var):
            parts.append(f"{var}={m[var]}")
    return ", ".join(parts)


def block(data: dict[str, Any]) -> str:
    """The generated text between one bench's markers (without the markers)."""
    counts = list(data["threads"])
    versions = "; ".join(f"{k} {v}" for k, v in data["versions"].items())
    how = f" (both sides: {data['threads_note']})" if data.get("threads_note") else ""
    peer = f" against {data['peer']}" if data.get("peer") else ""
    lines = [
        f"_Written by `benches/run_all.sh`; do not edit by hand._ Run {data['date']}{peer} on "
        f"{machine_text(data['machine'])}; {versions}; threads {', '.join(counts)}{how}; "
        f"{data['rounds']} interleaved rounds, medians, ratio [min, max] over the rounds, "
        f"> 1 means lexforge is faster. Command: `{_portable(data['command'])}`",
        "",
        "| task | threads | peer | lexforge | ratio [spread] |",
        "| --- | --- | --- | --- | --- |",
    ]
    tasks: list[str] = []
    for per in data["threads"].values():
        tasks += [t for t in per if t not in tasks]
    notes: list[str] = []
    for task in tasks:
        seen: dict[str, list[str]] = {}
        for n, per in data["threads"].items():
            r = per.get(task)
            if r is None:
                continue
            label = cell(f"{r.get('label') or task} ({r['unit']})")
            lines.append(
                f"| {label} | {n} | {number(r['peer'])} | {number(r['lexforge'])} | {ratio(r)} |"
            )
            if r.get("note"):
                seen.setdefault(r["note"], []).append(n)
        for note, ns in seen.items():
            where = "" if len(ns) == len(counts) else f" ({', '.join(ns)} threads)"
            notes.append(f"- {cell(per_label(data, task))}{where}: {cell(note)}")
    if notes:
        lines += ["", "Notes of the run:", "", *notes]
    return "\n".join(lines)


def per_label(data: dict[str, Any], task: str) -> str:
    for per in data["threads"].values():
        if task in per:
            return str(per[task].get("label") or task)
    return task


def spans(text: str) -> dict[str, tuple[int, int]]:
    """bench -> (end of its opening marker, start of its closing marker); errors on a marker
    without its partner, twice, or out of order."""
    opened: dict[str, int] = {}
    found: dict[str, tuple[int, int]] = {}
    for m in MARKER.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if name in opened or name in found:
                raise TableError(f"marker <!-- run_all:{name} --> appears twice")
            opened[name] = m.end()
        else:
            if name not in opened:
                raise TableError(f"<!-- /run_all:{name} --> has no opening marker before it")
            found[name] = (opened.pop(name), m.start())
    if opened:
        raise TableError(f"no closing marker for: {', '.join(sorted(opened))}")
    return found


def rewrite(text: str, results: list[dict[str, Any]], partial: bool = False) -> str:
    found = spans(text)
    names = [d["bench"] for d in results]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TableError(f"more than one result for: {', '.join(dup)}")
    missing = [n for n in names if n not in found]
    if missing:
        raise TableError(
            "no <!-- run_all:NAME --> ... <!-- /run_all:NAME --> markers in the page for: "
            + ", ".join(missing)
        )
    if not partial:
        unrun = sorted(set(found) - set(names))
        if unrun:
            raise TableError(
                f"no result for the page's blocks {', '.join(unrun)}: rewriting only some would "
                "mix runs (pass every bench's JSON, or --partial)"
            )
    # Replace from the end so the earlier offsets stay valid.
    for data in sorted(results, key=lambda d: found[d["bench"]][0], reverse=True):
        start, end = found[data["bench"]]
        text = text[:start] + "\n" + block(data) + "\n" + text[end:]
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("results", nargs="+", type=Path, help="JSON files of one run")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--partial", action="store_true", help="allow blocks without a result")
    ap.add_argument("--check", action="store_true", help="exit 1 if the page would change")
    args = ap.parse_args(argv)
    try:
        results = [load(p) for p in args.results]
        text = args.doc.read_text(encoding="utf-8")
        new = rewrite(text, results, args.partial)
    except (TableError, OSError) as e:
        print(f"run_all_tables: error: {e}", file=sys.stderr)
        return 1
    names = ", ".join(d["bench"] for d in results)
    if new == text:
        print(f"{args.doc}: up to date ({names})")
        return 0
    if args.check:
        print(f"{args.doc}: would change ({names})", file=sys.stderr)
        return 1
    args.doc.write_text(new, encoding="utf-8")
    print(f"{args.doc}: rewrote {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
