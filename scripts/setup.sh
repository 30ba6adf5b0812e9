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
echo "== quickstart: a BPE tokenizer and a small GPT-2 on six novels (about 7 minutes on 2 cores)"
run=runs/quickstart-gpt2
if [ -f "$run/eval/metrics.json" ]; then
  echo "(already trained in $run; delete it to train again)"
elif [ -d "$run" ]; then
  target/debug/lexforge lm resume "$run"
else
  target/debug/lexforge lm train examples/quickstart/gpt2.toml --out "$run"
fi
target/debug/lexforge lm evaluate "$run"
.venv/bin/python - "$run" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/eval/metrics.json"))
print(f"validation cross-entropy {m['val_loss']:.3f} nats/token vs unigram entropy "
      f"{m['unigram_entropy']:.3f}: {100 * (1 - m['val_loss_over_unigram']):.1f}% below; "
      f"{m['val_bits_per_char']:.3f} bits/char")
PY
target/debug/lexforge lm generate "$run" --prompt "It was" --max-new-tokens 40 \
    --temperature 0.8 --top-k 40 --seed 1
echo
echo "setup: done. Activate the environment with: source .venv/bin/activate"
