"""Side-by-side: verifying a run directory with lexforge (Rust, through the wheel) vs the
same checks in Python (hashlib.sha256 over every artifact, size + digest compare).

Both sides verify the same run directory (``--files`` artifacts, ``--mib`` MiB in all, page
cache warm) on the same explicit thread count: lexforge through ``lexforge.set_num_threads``
(and ``RAYON_NUM_THREADS``), Python with its ordinary parallel form, a
``ThreadPoolExecutor(n)`` over the artifacts (``hashlib`` releases the GIL while it hashes;
at 1 thread, a plain loop). Each round times both, best of ``--repeat`` calls each, lexforge
first; ``--threads``/``--rounds``/``--json`` as in every ``compare_*.py`` (see
``benches/benchlib.py``). Run from the repository root after scripts/setup.sh:

    python benches/compare_core.py [--mib 256] [--repeat 3] [--threads 1,2] [--rounds 5]

The ratio is Python time / lexforge time (> 1 means lexforge is faster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Bench, Result

import lexforge


def check_artifact(run_dir: Path, rel: str, entry: dict[str, Any]) -> None:
    path = run_dir / rel
    if path.is_symlink() or not path.is_file():
        raise RuntimeError(f"{path} is not a regular file")
    if path.stat().st_size != entry["bytes"]:
        raise RuntimeError(f"{path} size mismatch")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != entry["sha256"]:
        raise RuntimeError(f"{path} checksum mismatch")


def python_verify(run_dir: Path, pool: ThreadPoolExecutor | None = None) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    items = list(manifest["artifacts"].items())
    if pool is None:
        for rel, entry in items:
            check_artifact(run_dir, rel, entry)
    else:
        for f in [pool.submit(check_artifact, run_dir, rel, entry) for rel, entry in items]:
            f.result()


def prepare(args: argparse.Namespace, work: Path) -> None:
    each = args.mib * (1 << 20) // args.files
    rnd = os.urandom(each)
    files = {f"shard-{i:03}.bin": rnd[i:] + rnd[:i] for i in range(args.files)}
    run = lexforge.write_run_dir(str(work), "bench", "bench", files)
    (work / "run_dir.txt").write_text(str(run))


def setup(args: argparse.Namespace, threads: int, work: Path) -> dict[str, Any]:
    lexforge.set_num_threads(threads)
    benchlib.check_threads("lexforge", lexforge.get_num_threads(), threads)
    run = Path((work / "run_dir.txt").read_text())
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    # Warm the page cache so both sides hash from memory.
    python_verify(run, pool)
    lexforge.verify_run_dir(run)
    return {"run": run, "pool": pool}


def one_round(state: dict[str, Any], args: argparse.Namespace, threads: int) -> dict[str, Result]:
    run, pool = state["run"], state["pool"]
    t_rust = benchlib.best_of(args.repeat, lambda: lexforge.verify_run_dir(run))
    t_py = benchlib.best_of(args.repeat, lambda: python_verify(run, pool))
    peer = "hashlib.sha256, plain loop" if pool is None else f"hashlib.sha256, {threads} threads"
    label = f"verify a run dir ({args.files} files, {args.mib} MiB) vs {peer}"
    return {"verify_run_dir": Result(label, args.mib / t_py, args.mib / t_rust, "MiB/s")}


def versions() -> dict[str, str]:
    return {"lexforge": benchlib.lexforge_version()}


BENCH = Bench.of(
    globals(),
    name="core",
    title="Run-directory verification",
    peer="Python hashlib.sha256 (ThreadPoolExecutor over the artifacts at > 1 thread)",
    threads_note="lexforge.set_num_threads and RAYON_NUM_THREADS; ThreadPoolExecutor(n) for Python",
)


def main() -> None:
    ap = benchlib.parser(__doc__)
    ap.add_argument("--mib", type=int, default=256, help="total artifact size")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many calls per round")
    benchlib.run(BENCH, ap.parse_args())


if __name__ == "__main__":
    main()
