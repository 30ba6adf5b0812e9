#!/usr/bin/env bash
# Type-checks lexforge with burn's `cuda` backend compiled in, so cuda-gated code never rots.
#
# burn's cuda chain (cubecl-cuda -> cubecl-llvm -> tracel-llvm-bundler) downloads an LLVM bundle
# in a build script, which cannot work on machines that reach only package registries.
# DOCS_RS=1 makes that build script skip the download; `cargo check` never needs the bundle.
# A separate target directory keeps the main build's artifacts untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS_RS=1 CARGO_TARGET_DIR=target/cuda-check \
  cargo check --quiet -p lexforge -p lexforge-cli -p lexforge-python --features cuda --all-targets
echo "check-cuda: lexforge type-checks with the cuda backend"
