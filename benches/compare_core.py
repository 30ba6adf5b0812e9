"""Side-by-side: verifying a run directory with lexforge (Rust, through the wheel) vs the
same checks in Python (hashlib.sha256 over every artifact, size + digest compare).

Run from the repository root after scripts/setup.sh (or scripts/test.sh):

    .venv/bin/python benches/compare_core.py [--mib 256] [--repeat 5]

Prints a table and the ratio (Python time / lexforge time; > 1 means lexforge is faster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import lexforge


def python_verify(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for rel, entry in manifest["artifacts"].items():
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


def best_of(repeat: int, fn: object) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="total artifact size")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    each = args.mib * (1 << 20) // args.files
    with tempfile.TemporaryDirectory() as tmp:
        rnd = os.urandom(each)
        files = {f"shard-{i:03}.bin": rnd[i:] + rnd[:i] for i in range(args.files)}
        run = Path(lexforge.write_run_dir(tmp, "bench", "bench", files))
        # Warm the page cache so both sides hash from memory.
        python_verify(run)
        t_rust = best_of(args.repeat, lambda: lexforge.verify_run_dir(run))
        t_py = best_of(args.repeat, lambda: python_verify(run))
    mib = args.mib
    print(f"| verify a run dir ({args.files} files, {mib} MiB) | time | MiB/s |")
    print("| --- | --- | --- |")
    print(f"| lexforge.verify_run_dir (Rust sha2) | {t_rust * 1000:.1f} ms | {mib / t_rust:.0f} |")
    print(f"| Python hashlib.sha256 | {t_py * 1000:.1f} ms | {mib / t_py:.0f} |")
    print(f"\nratio (Python time / lexforge time): {t_py / t_rust:.2f}x")


if __name__ == "__main__":
    main()
