#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (libFuzzer, coverage-guided) for a bounded time each.
#
#   scripts/fuzz.sh [--quick] [SECONDS] [TARGET...]    default: 20 s per target, every target
#
# CI runs `scripts/fuzz.sh --quick 15`: --quick builds the targets with unoptimized dependencies
# (fuzz/Cargo.toml's dev profile: cold build ~2.6 min instead of ~7.5). By hand,
# `scripts/fuzz.sh 3600` fuzzes the optimized build for an hour per target.
# The checked-in seeds (fuzz/corpus/<target>, made by fuzz/make-seeds.py) are copied to
# target/fuzz-corpus/<target>, which keeps what libFuzzer finds between runs without touching
# the repository. A crash (a panic inside lexforge or a broken invariant, see fuzz/src/lib.rs)
# fails the script; the input is saved in fuzz/artifacts/<target>/ to reproduce with
# `cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...`.
#
# Stable Rust: `-s none` (no sanitizer; the code is safe Rust, and a panic aborts the run) keeps
# the build on the machine's one toolchain. Executions and crashes per target are printed and
# written to target/fuzz-report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
build=(--release)
if [ "${1:-}" = --quick ]; then
  build=(--dev)
  shift
fi
seconds=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(text chunk config tokenizer safetensors)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)"
  cargo install --locked --quiet cargo-fuzz
fi
# One optimized build of every target, sharing the main target/ directory's registry cache.
cargo fuzz build "${build[@]}" -s none --fuzz-dir fuzz
report=target/fuzz-report.txt
: > "$report"
status=0
for t in "${targets[@]}"; do
  work=target/fuzz-corpus/$t
  mkdir -p "$work" "fuzz/artifacts/$t"
  cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  log=target/fuzz-$t.log
  if cargo fuzz run "${build[@]}" -s none --fuzz-dir fuzz "$t" "$work" -- \
      -max_total_time="$seconds" -max_len=4096 -timeout=60 -rss_limit_mb=4096 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  line="fuzz $t: $result, $execs executions in ${seconds}s, corpus $(ls "$work" | wc -l), saved crash inputs $crashes"
  echo "$line" | tee -a "$report"
  if [ "$result" = CRASH ]; then tail -30 "$log"; fi
done
exit $status
