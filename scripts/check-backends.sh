#!/usr/bin/env bash
# Backend parity beyond the default build: compiles lexforge with the `ndarray` and `wgpu`
# backends and runs the parity test (crates/lexforge/tests/backend_parity.rs), which compares
# every usable backend at every precision it supports with flex in f32, then the two-device
# data-parallel test (flex + ndarray). On a machine without a GPU, wgpu runs on Mesa's lavapipe
# (a Vulkan driver on the CPU):
#
#   sudo apt-get install mesa-vulkan-drivers libvulkan1
#
# It has its own target directory (wgpu's dependency tree is large: ~19 min cold on 2 cores,
# see docs/backends.md), which is why the README's test command does not run it.
# Writes the parity table to target/backends/parity.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/backends
# wgpu's Vulkan loader wants a runtime directory; containers often lack one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
mkdir -p "$CARGO_TARGET_DIR"
start=$(date +%s)
cargo test -p lexforge --features ndarray,wgpu --test backend_parity --no-run
built=$(date +%s)
echo "check-backends: build took $((built - start)) s"
cargo run -q -p lexforge-cli --features ndarray,wgpu -- devices
LEXFORGE_PARITY_TABLE="$PWD/$CARGO_TARGET_DIR/parity.md" \
  cargo test -p lexforge --features ndarray,wgpu --test backend_parity -- --nocapture
cargo test -p lexforge --features ndarray,wgpu --test backend_parity data_parallel -- --nocapture
echo "check-backends: parity holds; table in $CARGO_TARGET_DIR/parity.md ($(($(date +%s) - start)) s)"
