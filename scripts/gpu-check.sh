#!/usr/bin/env bash
# For a machine with an NVIDIA GPU: builds lexforge with burn's `cuda` backend, shows what
# `auto` picks, runs the backend/precision parity test against the CPU, and times GPT-2 and
# char-LSTM training steps on the GPU at each precision next to the CPU. Prints one table.
#
# Needs the NVIDIA driver (`nvidia-smi` works) and, for the build only, network access: burn's
# cuda chain downloads an LLVM bundle in a build script (on machines without network, only the
# type check `scripts/check-cuda.sh` works). Its own target directory: target/gpu.
#
# Without a driver, every cuda device request fails with a typed error instead of a crash:
#   Rust:   lexforge::Error::NoDevice { backend: "cuda", reason: <what the driver probe said> }
#   Python: lexforge.DeviceError;  CLI: exit status 1 with the same message
# and `lexforge devices` lists cuda as compiled but not usable, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/gpu
if ! nvidia-smi -L; then
  echo "gpu-check: no NVIDIA driver here (nvidia-smi failed); nothing to check" >&2
  exit 2
fi
cargo build --release -p lexforge-cli --features cuda
cargo build --release -p lexforge-benches --features cuda --bin lm-bench
"$CARGO_TARGET_DIR/release/lexforge" devices
LEXFORGE_PARITY_TABLE="$PWD/$CARGO_TARGET_DIR/parity.md" \
  cargo test --release -p lexforge --features cuda --test backend_parity -- --nocapture

bench="$CARGO_TARGET_DIR/release/lm-bench"
row() { # device precision kind args...
  local device=$1 precision=$2 kind=$3
  shift 3
  local json
  if json=$(LEXFORGE_DEVICE=$device LEXFORGE_PRECISION=$precision "$bench" "$kind" "$@" 2>&1 | tail -1); then
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(f"{r[\"tokens_per_s\"]:>12.0f}")' "$json"
  else
    echo "   error: $json"
  fi
}
printf '%-10s %-6s %-10s %12s\n' model device precision "tokens/s"
for precision in f32 f16 bf16; do
  for device in cuda cpu; do
    [ "$device" = cpu ] && [ "$precision" != f32 ] && continue
    printf '%-10s %-6s %-10s %s\n' gpt2 "$device" "$precision" \
      "$(row "$device" "$precision" gpt2-train 6 6 384 256 8 8000 5)"
    printf '%-10s %-6s %-10s %s\n' char-lstm "$device" "$precision" \
      "$(row "$device" "$precision" lstm-train 128 512 2 128 16 100 5)"
  done
done
