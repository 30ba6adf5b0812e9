"""The merge at library scale: stage B over synthetic stage-A shards for BOOKS books, at two
chunk counts per book, each merged REPEATS times in a fresh process; wall time and peak
resident memory (the process's VmHWM, and ru_maxrss from wait4 as a check).

Peak memory should grow with the books, not with the chunks: the runs at 4x the chunks per
book must stay within the run-to-run spread of the smaller ones.

    cargo build -p lexforge-benches --bin data-bench
    python benches/prepare_scale.py --bin target/debug/data-bench --work /tmp/scale \\
        --books 59000 --chunks 20 80 --threads 2

Needs ~14 GB of free disk at 80 chunks per book (the shards' vectors alone are
books x chunks x 384 x 4 bytes). Prints one JSON object per run, then a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str], env: dict[str, str]) -> tuple[dict, float, float]:
    """Runs ``cmd``; returns its JSON output, wall seconds and ru_maxrss in MiB."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout is not None and p.stderr is not None
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {err.decode()[-2000:]}")
    return json.loads(out), wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, required=True, help="the data-bench binary")
    ap.add_argument("--work", type=Path, required=True, help="a scratch directory")
    ap.add_argument("--books", type=int, default=59_000)
    ap.add_argument("--chunks", type=int, nargs="+", default=[20, 80])
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--words", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    print(f"threads: {args.threads} (RAYON_NUM_THREADS); books: {args.books}", flush=True)
    rows = []
    for per_book in args.chunks:
        shard_dir = args.work / f"shards-{per_book}"
        shutil.rmtree(shard_dir, ignore_errors=True)
        gen, gen_wall, _ = run(
            [
                str(args.bin),
                "synth-shards",
                str(shard_dir),
                str(args.books),
                str(per_book),
                str(args.shards),
                str(args.words),
                str(args.seed),
            ],
            env,
        )
        size = sum(f.stat().st_size for f in shard_dir.rglob("*") if f.is_file())
        print(json.dumps({"generate": gen, "bytes": size}), flush=True)
        shards = sorted(str(p) for p in shard_dir.iterdir())
        for r in range(args.repeats):
            out = args.work / f"dataset-{per_book}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            res, wall, maxrss = run(
                [str(args.bin), "merge", str(out), str(args.seed), *shards], env
            )
            res.update(chunks_per_book=per_book, wall=wall, ru_maxrss_mib=maxrss, repeat=r)
            print(json.dumps(res), flush=True)
            rows.append(res)
            shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(shard_dir, ignore_errors=True)
    print()
    print(f"{'chunks/book':>11} {'chunks':>10} {'merge s':>8} {'peak MiB':>9} {'maxrss MiB':>10}")
    for r in rows:
        print(
            f"{r['chunks_per_book']:>11} {r['dedup']['input']:>10} {r['seconds']:>8.1f} "
            f"{r['peak_rss_mib']:>9.1f} {r['ru_maxrss_mib']:>10.1f}"
        )


if __name__ == "__main__":
    main()
