#!/usr/bin/env bash
# Peak resident memory of tokenizer training and data prep on 1x and 4x the shared corpus
# (4x = four copies of every book under distinct author names), measured with GNU time's
# maximum RSS. Prints one line per (command, size); docs/reliability.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
books=../shared/corpora/gutenberg/books
bin=target/debug/lexforge
[ -x "$bin" ] || cargo build -q -p lexforge-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/1x" "$work/4x"
cp -r "$books"/. "$work/1x/"
for i in 1 2 3 4; do
  for author in "$books"/*/; do
    name=$(basename "$author")
    cp -r "$author" "$work/4x/${name}_copy$i"
  done
done
size() { du -sm "$1" | cut -f1; }
peak() { # label, command...
  local label=$1
  shift
  /usr/bin/time -f "%M %e" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
    cat "$work/err"
    return 1
  }
  read -r kib secs <"$work/time"
  echo "$label: peak RSS $((kib / 1024)) MiB, ${secs} s"
}
for n in 1x 4x; do
  corpus=$work/$n
  echo "corpus $n: $(size "$corpus") MB, $(find "$corpus" -name '*.txt' | wc -l) books"
  peak "tokenizer train bpe 8000 ($n)" \
    "$bin" tokenizer train "$corpus" --out "$work/tok-$n" --method bpe --vocab-size 8000
  peak "prepare, tiny encoder ($n)" \
    "$bin" prepare "$corpus" --out "$work/ds-$n" --encoder tests/fixtures/roberta_tiny/roberta \
    --max-chunks-per-book 50
done
