"""Executes docs/notebooks/*.ipynb headless (nbclient, a fresh kernel each) against the
installed lexforge and fails on the first cell error; the outputs are not written back. The
kernels run in a scratch working directory outside the repository, with only the documented
variables (LEXFORGE_BOOKS, LEXFORGE_WORK, and the MiniLM weights as the notebook README says),
as a user's would.
Also writes each notebook's code cells to target/notebook-code/<name>.py, which
scripts/test.sh type-checks with mypy --strict.

    python scripts/run-notebooks.py [NAME ...]      # all notebooks by default
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "docs" / "notebooks"
CODE = ROOT / "target" / "notebook-code"


def extract(nb: nbformat.NotebookNode, name: str) -> None:
    CODE.mkdir(parents=True, exist_ok=True)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    body = "\n\n".join(cells)
    (CODE / f"{name}.py").write_text(f'"""Code cells of {name}.ipynb."""\n\n{body}\n')


def main() -> int:
    names = sys.argv[1:] or sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="lexforge-notebooks-") as work:
        os.environ["LEXFORGE_WORK"] = work
        os.environ.setdefault("LEXFORGE_BOOKS", str(ROOT.parent / "shared/corpora/gutenberg/books"))
        os.environ.setdefault("MPLBACKEND", "Agg")
        # datasets' cache goes with the run, not into the home folder.
        os.environ.setdefault("HF_DATASETS_CACHE", str(Path(work) / "hf-datasets"))
        cwd = Path(work) / "cwd"
        cwd.mkdir()
        for name in names:
            nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
            extract(nb, name)
            t0 = time.perf_counter()
            client = NotebookClient(
                nb,
                timeout=900,
                kernel_name="python3",
                resources={"metadata": {"path": str(cwd)}},
            )
            client.execute()
            print(f"run-notebooks: {name} ran in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
