#!/usr/bin/env bash
# The full form of the reliability campaigns (docs/reliability.md), from one command:
#
#   scripts/reliability.sh [FUZZ_SECONDS_PER_TARGET]     default 600
#
# - kill-and-resume: 12 seeded SIGKILLs per pipeline (LEXFORGE_KILL_POINTS, LEXFORGE_KILL_SEED);
# - corrupt artifacts: every damaged variant of every artifact type (LEXFORGE_CORRUPT_SAMPLE=1);
# - full disk and read-only output directories, and the bad-input matrix tests;
# - cargo-fuzz on every target for FUZZ_SECONDS_PER_TARGET;
# - peak memory of data prep and tokenizer training on 1x and 4x the shared corpus.
#
# CI runs the reduced form: the same tests inside `cargo test` (3 kills per pipeline, one
# corrupt variant in 4) and `scripts/fuzz.sh --quick 15`. The summary goes to target/reliability.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${1:-600}
summary=target/reliability.txt
mkdir -p target
: > "$summary"
echo "== kill-and-resume, corrupt artifacts, disk, bad input (full form)"
LEXFORGE_KILL_POINTS=${LEXFORGE_KILL_POINTS:-12} LEXFORGE_CORRUPT_SAMPLE=1 \
  cargo test -q -p lexforge-cli --test it -- kill_resume corrupt disk bad_input --nocapture \
  --test-threads=1 2>&1 | tee target/reliability-tests.log | grep -E "^(kill-resume|corrupt)|test result" | tee -a "$summary"
echo "== fuzz ($fuzz_seconds s per target)"
scripts/fuzz.sh "$fuzz_seconds"
cat target/fuzz-report.txt >> "$summary"
echo "== peak memory, 1x and 4x corpus"
scripts/measure-memory.sh | tee -a "$summary"
echo "summary in $summary"
