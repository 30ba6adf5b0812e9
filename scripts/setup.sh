#!/usr/bin/env bash
# README "setup" command: install everything, build the CLI and the Python wheel, and run a
# first real job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "setup: building and installing the Python wheel into .venv"
scripts/build-wheel.sh
# The CLI is built together with the binding crate so that cargo resolves the same dependency
# features as the wheel build and reuses its compiled burn (scripts/check-shared-build.py).
echo "setup: building the lexforge CLI"
cargo build --quiet -p lexforge-cli -p lexforge-python

echo
echo "== lexforge devices"
target/debug/lexforge devices
echo
echo "== the Python package"
.venv/bin/python -W error -c "import lexforge; print(lexforge.__version__, lexforge.devices())"
echo
echo "== a run directory written from Python and verified by the CLI"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python - "$work" <<'PY'
import sys, lexforge
print("lexforge", lexforge.__version__, "on burn", lexforge.BURN_VERSION)
path = lexforge.write_run_dir(sys.argv[1], "first-run", "setup-check",
                              {"hello.txt": b"hello, lexforge\n"}, config={"seed": 0})
print("wrote", path)
PY
target/debug/lexforge manifest verify "$work/first-run"
echo
echo "setup: done. Activate the environment with: source .venv/bin/activate"
