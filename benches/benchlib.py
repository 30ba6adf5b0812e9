"""Shared pieces of the ``benches/compare_*.py`` side-by-side benchmarks (issue #25, item 5).

Every timing comparison is declared as a :class:`Bench` and run by :func:`run`, which gives
each script the same command line and output:

- ``--threads 1,2``: each thread count runs in its own worker process, started with
  ``RAYON_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
  and ``TOKENIZERS_PARALLELISM`` set *before* anything is imported (rayon, OpenMP and
  OpenBLAS size their pools once, at first use), so lexforge (its bench binaries, its wheel)
  and the peer (PyTorch, HF tokenizers, numpy, faiss, ...) compute on the same explicit
  count; the script's ``setup`` also calls the libraries' own setters (``torch``,
  ``lexforge.set_num_threads``, ``faiss``) and checks them with :func:`check_threads`.
- ``--rounds N``: round-robin: every round runs every thread count in turn, and inside a
  round the script alternates peer and lexforge task by task, so machine noise hits both.
  Workers are set up one after the other and idle while another one times, so they never
  compete for the cores.
- the table: per thread count and task, the medians over the rounds of the peer's and
  lexforge's numbers and of their ratio, with the ratio's [min, max] over the rounds. The
  ratio is always expressed so that > 1 means lexforge is faster.
- ``--json [PATH]``: the common schema (``-`` or no PATH: stdout, the table then goes to
  stderr)::

    {"bench": "lm", "title": ..., "date": ISO, "machine": {...}, "versions": {...},
     "command": "...", "rounds": 5, "peer": ..., "threads_note": ..., "settings": {...},
     "threads": {"1": {"<task>": {"label": ..., "peer": ..., "lexforge": ..., "unit": ...,
                                  "ratio": ..., "ratio_min": ..., "ratio_max": ...,
                                  "higher_is_better": true, "note": ...,
                                  "peer_rounds": [...], "lexforge_rounds": [...]}},
                 "2": {...}}}

  A task without a peer (lexforge only) has ``peer`` and the ratios ``null``.

``benches/run_all.sh`` runs every script with ``--json`` and ``benches/run_all_tables.py``
turns the files into the tables of ``docs/benchmarks.md``. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = ROOT / "target" / "debug"
BOOKS = ROOT.parent / "shared" / "corpora" / "gutenberg" / "books"
BUILD_HINT = "cargo build -p lexforge-benches"

# Read once, when a pool starts: set before the worker imports anything.
THREAD_ENV = (
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclasses.dataclass
class Result:
    """One task's numbers in one round at one thread count.

    ``peer`` is ``None`` for a lexforge-only measurement. ``higher_is_better`` tells how the
    ratio is formed (rates: lexforge / peer; times: peer / lexforge), so that > 1 always means
    lexforge is faster."""

    label: str
    peer: float | None
    lexforge: float
    unit: str
    higher_is_better: bool = True
    note: str = ""

    def ratio(self) -> float | None:
        if self.peer is None or self.peer <= 0 or self.lexforge <= 0:
            return None
        return self.lexforge / self.peer if self.higher_is_better else self.peer / self.lexforge


@dataclasses.dataclass
class Bench:
    """A side-by-side comparison, run by :func:`run`.

    ``setup(args, threads, workdir)`` runs once in each thread count's worker (the thread
    variables already set) and returns the state that ``one_round(state, args, threads)``
    times, returning ``{task: Result}``. ``prepare(args, workdir)``, if given, runs once in
    the parent first (inputs shared by all workers, untimed). ``versions()`` runs in a worker
    and names the libraries: the peer's, and ``lexforge`` (:func:`lexforge_version`) when the
    bench uses the wheel; the binaries' build times are added by :func:`run`. ``binaries``
    are the lexforge bench binaries (in ``target/debug``) the bench needs; :func:`run`
    refuses to start without them. The functions must be module-level (not lambdas): they are
    pickled to the workers, which import the script again (``spawn``)."""

    name: str
    title: str
    peer: str
    threads_note: str
    setup: Callable[[argparse.Namespace, int, Path], Any]
    one_round: Callable[[Any, argparse.Namespace, int], dict[str, Result]]
    versions: Callable[[], dict[str, str]]
    prepare: Callable[[argparse.Namespace, Path], None] | None = None
    binaries: tuple[str, ...] = ()

    @classmethod
    def of(cls, namespace: dict[str, Any], **fields: Any) -> Bench:
        """The bench whose ``setup``, ``one_round``, ``versions`` and (when defined) ``prepare``
        are the functions of those names in ``namespace`` (a script's ``globals()``)."""
        return cls(
            setup=namespace["setup"],
            one_round=namespace["one_round"],
            versions=namespace["versions"],
            prepare=namespace.get("prepare"),
            **fields,
        )


#: How the benches that compare against PyTorch pin both sides' threads.
TORCH_THREADS = (
    "torch.set_num_threads and OMP_NUM_THREADS for PyTorch, "
    "lexforge.set_num_threads for the wheel, checked"
)


# ---- command line ---------------------------------------------------------------------------


def parser(doc: str | None, threads: str = "1,2", rounds: int = 5) -> argparse.ArgumentParser:
    """An argument parser with the common ``--threads``, ``--rounds`` and ``--json``."""
    ap = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--threads",
        default=threads,
        type=thread_counts,
        help=f"comma-separated thread counts, both sides at each (default {threads})",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=rounds,
        help=f"interleaved rounds; medians and the ratio's spread over them (default {rounds})",
    )
    ap.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write the results in the common JSON schema to PATH (or stdout: '-' / no PATH)",
    )
    return ap


def thread_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None
    if not counts or any(n < 1 for n in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"need distinct thread counts >= 1: {text!r}")
    return counts


def add_tasks(ap: argparse.ArgumentParser, tasks: Sequence[str], default: Sequence[str]) -> None:
    """``--tasks``: a comma-separated subset of ``tasks`` (checked by :func:`selected`)."""
    ap.add_argument(
        "--tasks",
        default=",".join(default),
        help=f"comma-separated subset of {', '.join(tasks)} (default {','.join(default)})",
    )


def selected(ap: argparse.ArgumentParser, args: argparse.Namespace, tasks: Sequence[str]) -> None:
    """Turns ``args.tasks`` into a tuple, erroring on unknown names."""
    chosen = tuple(t for t in args.tasks.split(",") if t)
    unknown = sorted(set(chosen) - set(tasks))
    if unknown or not chosen:
        ap.error(f"unknown or no tasks: {unknown}; known: {', '.join(tasks)}")
    args.tasks = chosen


# ---- threads --------------------------------------------------------------------------------


def thread_env(n: int) -> dict[str, str]:
    env = {k: str(n) for k in THREAD_ENV}
    env["TOKENIZERS_PARALLELISM"] = "true"
    return env


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pin_threads(n: int) -> None:
    """Sets the thread variables for libraries not loaded yet and, when numpy is already
    loaded, limits its BLAS through threadpoolctl (if installed). For scripts that do not use
    :func:`run`; the workers of ``run`` get the variables before they start."""
    os.environ.update(thread_env(n))
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            print(
                f"warning: numpy was loaded before OMP_NUM_THREADS={n} and threadpoolctl is "
                "missing: its BLAS may use another thread count",
                file=sys.stderr,
            )
        else:
            threadpool_limits(n)


def check_threads(what: str, got: object, want: int) -> None:
    """Stops the bench when a side does not compute on ``want`` threads."""
    if got != want:
        raise SystemExit(f"{what} computes on {got} threads, not {want}")


_unreported: set[str] = set()


def run_binary(name: str, *args: object, threads: int, env: dict[str, str] | None = None) -> Any:
    """Runs the lexforge bench binary ``target/debug/<name>`` on ``threads`` rayon threads and
    returns the JSON object of its last stdout line, checking the ``threads`` it reports (a
    warning, once, when it reports none)."""
    full = {**os.environ, **thread_env(threads), **(env or {})}
    out = subprocess.run(
        [str(BIN_DIR / name), *map(str, args)], check=True, capture_output=True, text=True, env=full
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if isinstance(result, dict) and "threads" in result:
        check_threads(name, result["threads"], threads)
    elif name not in _unreported:
        _unreported.add(name)
        print(
            f"note: {name} does not report its thread count; RAYON_NUM_THREADS={threads} is set",
            file=sys.stderr,
        )
    return result


# ---- facts about the run --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, the load when the run started."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    info["cores"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        info["cores_available"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    info["os"] = f"{platform.system()} {platform.release()}"
    info["python"] = platform.python_version()
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def lexforge_version() -> str:
    """The installed lexforge wheel's version and the hash of the wheel it came from."""
    from importlib import metadata

    try:
        dist = metadata.distribution("lexforge")
    except metadata.PackageNotFoundError:
        return "not installed"
    text = dist.version
    direct = dist.read_text("direct_url.json")
    if direct:
        digest = json.loads(direct).get("archive_info", {}).get("hash", "")
        if digest:
            text += f" (wheel {digest.split('=', 1)[-1][:12]})"
    return text


def binaries_version(names: Sequence[str]) -> str:
    """The lexforge bench binaries' build times and the checkout's commit."""
    parts = []
    for name in names:
        mtime = (BIN_DIR / name).stat().st_mtime
        parts.append(f"{name} built {_dt.datetime.fromtimestamp(mtime).isoformat(' ', 'minutes')}")
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        parts.append(f"checkout {head}")
    except (OSError, subprocess.CalledProcessError):
        pass
    return ", ".join(parts)


def require_binaries(names: Sequence[str]) -> None:
    missing = [n for n in names if not (BIN_DIR / n).is_file()]
    if missing:
        raise SystemExit(
            f"missing lexforge bench binaries in {BIN_DIR}: {', '.join(missing)}\n"
            f"build them first: {BUILD_HINT}"
        )


# ---- the driver -----------------------------------------------------------------------------


def _worker(conn: Any, bench: Bench, args: argparse.Namespace, threads: int, work: str) -> None:
    # Stray prints of the libraries go to stderr; results go through the pipe.
    os.dup2(2, 1)
    try:
        state = bench.setup(args, threads, Path(work))
        conn.send(("ready", bench.versions()))
        while conn.recv() is not None:
            conn.send(("round", bench.one_round(state, args, threads)))
    except BaseException as e:  # report every failure (SystemExit too) to the parent
        with contextlib.suppress(Exception):  # unless the parent is gone
            conn.send(("error", "".join(traceback.format_exception(type(e), e, e.__traceback__))))
    finally:
        conn.close()


class _Worker:
    def __init__(self, bench: Bench, args: argparse.Namespace, threads: int, work: Path) -> None:
        self.threads = threads
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        with _environ(thread_env(threads)):
            self.proc = ctx.Process(
                target=_worker, args=(child, bench, args, threads, str(work)), daemon=False
            )
            self.proc.start()
        child.close()

    def receive(self, what: str) -> Any:
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise SystemExit(
                f"the {self.threads}-thread worker died (exit code {self.proc.exitcode}) "
                f"during {what}"
            ) from None
        if kind == "error":
            raise SystemExit(f"the {self.threads}-thread worker failed during {what}:\n{payload}")
        return payload

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(None)
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``bench`` at every ``args.threads`` count for ``args.rounds`` interleaved rounds,
    prints the table and writes the JSON (``args.json``); returns the JSON object."""
    require_binaries(bench.binaries)
    counts: list[int] = args.threads
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    table_out = sys.stderr if args.json == "-" else sys.stdout
    # The interpreter by name, not by where this machine keeps it: docs/benchmarks.md shows
    # the command and must not carry a machine's paths.
    command = shlex.join(["python", *sys.argv])
    started = _dt.datetime.now().astimezone()
    machine_info = machine()
    built = binaries_version(bench.binaries) if bench.binaries else ""
    mtimes = [(BIN_DIR / b).stat().st_mtime_ns for b in bench.binaries]
    say = _printer(table_out)
    say(f"{bench.title}: lexforge vs {bench.peer}")
    say(f"threads: {', '.join(map(str, counts))} (both sides: {bench.threads_note})")
    say(f"{args.rounds} interleaved round(s), thread counts in turn")

    runs: dict[int, dict[str, list[Result]]] = {n: {} for n in counts}
    workers: list[_Worker] = []
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=f"bench-{bench.name}-") as tmp:
        work = Path(tmp)
        try:
            if bench.prepare is not None:
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(sys.stderr):
                    bench.prepare(args, work)
                _log(f"prepared inputs in {time.perf_counter() - t0:.1f} s")
            # One at a time, so that no setup competes with another for the cores.
            for n in counts:
                t0 = time.perf_counter()
                w = _Worker(bench, args, n, work)
                workers.append(w)
                versions = w.receive(f"setup at {n} threads")
                _log(f"{n}-thread worker set up in {time.perf_counter() - t0:.1f} s")
            for r in range(args.rounds):
                for w in workers:
                    t0 = time.perf_counter()
                    w.conn.send("round")
                    got: dict[str, Result] = w.receive(f"round {r + 1}")
                    for task, res in got.items():
                        runs[w.threads].setdefault(task, []).append(res)
                    brief = ", ".join(
                        f"{t} {x:.2f}" for t, res in got.items() if (x := res.ratio()) is not None
                    )
                    _log(
                        f"round {r + 1}/{args.rounds}, {w.threads} thread(s), "
                        f"{time.perf_counter() - t0:.1f} s: ratios {brief or '-'}"
                    )
        finally:
            for w in workers:
                w.close()

    if bench.binaries:
        versions["lexforge bench binaries"] = built
        if [(BIN_DIR / b).stat().st_mtime_ns for b in bench.binaries] != mtimes:
            # Rebuilt while the bench ran: the rounds may mix two builds.
            versions["lexforge bench binaries"] += " (REBUILT during the run: do not trust)"
            _log(f"warning: {', '.join(bench.binaries)} rebuilt during the run")
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("threads", "rounds", "json")
    }
    results: dict[str, Any] = {
        "bench": bench.name,
        "title": bench.title,
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info,
        "versions": versions,
        "command": command,
        "rounds": args.rounds,
        "peer": bench.peer,
        "threads_note": bench.threads_note,
        "settings": settings,
        "threads": {str(n): summarize(per) for n, per in runs.items()},
    }
    print_table(results, table_out)
    if args.json == "-":
        print(json.dumps(results, indent=2))
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        say(f"\nJSON: {args.json}")
    return results


def _printer(out: Any) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    return say


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def summarize(per: dict[str, list[Result]]) -> dict[str, Any]:
    """Medians over the rounds, the ratio's median and [min, max], per task."""
    out: dict[str, Any] = {}
    for task, results in per.items():
        first = results[0]
        peers = [r.peer for r in results if r.peer is not None]
        ratios = [x for r in results if (x := r.ratio()) is not None]
        notes = [r.note for r in results if r.note]
        out[task] = {
            "label": first.label,
            "peer": statistics.median(peers) if peers else None,
            "lexforge": statistics.median(r.lexforge for r in results),
            "unit": first.unit,
            "ratio": statistics.median(ratios) if ratios else None,
            "ratio_min": min(ratios) if ratios else None,
            "ratio_max": max(ratios) if ratios else None,
            "higher_is_better": first.higher_is_better,
            "note": notes[-1] if notes else "",
            "peer_rounds": [r.peer for r in results],
            "lexforge_rounds": [r.lexforge for r in results],
        }
    return out


# ---- output ---------------------------------------------------------------------------------


def fmt(x: float | None) -> str:
    """A number with about three significant digits, thousands separated."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def ratio_text(r: dict[str, Any]) -> str:
    if r.get("ratio") is None:
        return "—"
    return f"{r['ratio']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"


def print_table(results: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    print(
        f"\n{results['rounds']} round(s); medians; ratio [min, max] over the rounds, "
        "> 1 means lexforge is faster",
        file=out,
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), file=out)
    for n, per in results["threads"].items():
        print(f"\n{n} thread(s)", file=out)
        width = max([len(r["label"]) for r in per.values()] + [4])
        print(
            f"{'task':<{width}}  {'peer':>12}  {'lexforge':>12}  {'unit':<10} ratio [spread]",
            file=out,
        )
        for r in per.values():
            print(
                f"{r['label']:<{width}}  {fmt(r['peer']):>12}  {fmt(r['lexforge']):>12}  "
                f"{r['unit']:<10} {ratio_text(r)}",
                file=out,
            )
        for r in per.values():
            if r["note"]:
                print(f"  {r['label']}: {r['note']}", file=out)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, and what it returned."""
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """The best of ``repeat`` (>= 1) timed calls of ``fn``, in seconds."""
    return min(timed(fn)[0] for _ in range(max(1, repeat)))
