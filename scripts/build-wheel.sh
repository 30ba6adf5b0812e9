#!/usr/bin/env bash
# Builds the lexforge wheel and installs it into .venv.
#
# The wheel is built with the `dev` profile, whose dependencies are fully optimized (see
# Cargo.toml and docs/adr/0001-burn-0.22-runtime-device.md), so it reuses every dependency that
# `cargo test` compiled. LEXFORGE_PROFILE=release builds a release wheel instead.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${LEXFORGE_PROFILE:-dev}
rm -rf target/wheels
.venv/bin/maturin build --quiet --profile "$profile" --out target/wheels
.venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/lexforge-*.whl
