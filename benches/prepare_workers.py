"""Book preparation on a real corpus with stage A spread over W worker processes: each worker
runs `lexforge prepare shard` on its part with CORES / W threads, then one `lexforge prepare
merge`. Prints the wall time of stage A (the slowest worker) and of the merge for each W, the
per-book cost in core-seconds, and checks that every W gives byte-identical data files.

    python benches/prepare_workers.py --cli target/debug/lexforge \\
        --books ../shared/corpora/gutenberg/books --work /tmp/workers --workers 1 2 --cores 2
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

DATA_FILES = ["train.jsonl", "validation.jsonl", "test.jsonl", "chunks.jsonl", "books.jsonl"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", type=Path, required=True, help="the lexforge binary")
    ap.add_argument("--books", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--encoder", type=Path, default=None, help="default: the installed MiniLM")
    args = ap.parse_args()
    params = ["--seed", str(args.seed)]
    enc = ["--encoder", str(args.encoder)] if args.encoder else []
    n_books = len(list(args.books.glob("*/*.txt")))
    first: Path | None = None
    results = []
    for w in args.workers:
        threads = max(1, args.cores // w)
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        root = args.work / f"w{w}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        shards = [root / f"shard{i}" for i in range(w)]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    str(args.cli),
                    "prepare",
                    "shard",
                    str(args.books),
                    "--index",
                    str(i),
                    "--count",
                    str(w),
                    "--out",
                    str(shards[i]),
                    *enc,
                    *params,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(w)
        ]
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                sys.exit(f"shard failed: {err.decode()[-2000:]}")
        stage_a = time.perf_counter() - t0
        t1 = time.perf_counter()
        merge = subprocess.run(
            [
                str(args.cli),
                "prepare",
                "merge",
                *map(str, shards),
                "--out",
                str(root / "ds"),
                "--json",
                *params,
            ],
            env=dict(os.environ, RAYON_NUM_THREADS=str(args.cores)),
            capture_output=True,
        )
        if merge.returncode != 0:
            sys.exit(f"merge failed: {merge.stderr.decode()[-2000:]}")
        merge_s = time.perf_counter() - t1
        summary = json.loads(merge.stdout)
        same = None
        if first is None:
            first = root / "ds"
        else:
            same = all(
                (first / f).read_bytes() == (root / "ds" / f).read_bytes() for f in DATA_FILES
            )
        r = {
            "workers": w,
            "threads_per_worker": threads,
            "books": n_books,
            "chunks": summary["chunks"],
            "stage_a_s": round(stage_a, 1),
            "merge_s": round(merge_s, 2),
            "core_s_per_book": round(stage_a * w * threads / n_books, 2),
            "identical_to_first": same,
        }
        results.append(r)
        print(json.dumps(r), flush=True)
    print()
    print(f"{'workers':>7} {'threads':>7} {'stage A s':>9} {'merge s':>7} {'core-s/book':>11}")
    for r in results:
        print(
            f"{r['workers']:>7} {r['threads_per_worker']:>7} {r['stage_a_s']:>9} "
            f"{r['merge_s']:>7} {r['core_s_per_book']:>11}"
        )


if __name__ == "__main__":
    main()
