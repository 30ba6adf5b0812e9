#!/usr/bin/env bash
# Builds the sdist and proves it is complete: the archive is unpacked and the extension
# module is compiled from it alone. (The archive's Cargo.lock is pruned offline to the crates
# it ships; every version stays the one this repository's Cargo.lock pins.)
#
#   scripts/check-sdist.sh          `cargo check` of the module from the unpacked sdist, with
#                                   this repository's target/ (dependencies already checked by
#                                   clippy are reused): seconds; CI runs this.
#   scripts/check-sdist.sh --full   `pip wheel` from the sdist in a fresh venv (a cold release
#                                   build, ~8 min here), then imports it and trains a tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=target/sdist
rm -rf "$out"
.venv/bin/maturin sdist --out "$out" >/dev/null 2>&1
archive=$(ls "$out"/lexforge-*.tar.gz)
echo "sdist: $archive ($(du -k "$archive" | cut -f1) KB, $(tar tzf "$archive" | wc -l) files)"
tar xzf "$archive" -C "$out"
src=$(ls -d "$out"/lexforge-*/)
# The archive stamps every file with one fixed old date, so cargo, which judges freshness by
# modification time, would take the previous check's artifacts of these same paths in target/
# as up to date and check stale code: stamp the unpacked files now.
find "$src" -type f -exec touch {} +
if [ "${1:-}" = "--full" ]; then
  rm -rf "$out/venv"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q --disable-pip-version-check "$archive"
  (cd /tmp && "$root/$out/venv/bin/python" -c '
import pathlib, tempfile, lexforge
text = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
text.write_text("the quick brown fox jumps over the lazy dog\n" * 50, encoding="utf-8")
tok = lexforge.Tokenizer.train([text], "bpe", 300)
assert tok.decode(tok.encode("the lazy fox")) == "the lazy fox"
print("built from the sdist:", lexforge.__version__, tok)
')
else
  (cd "$src" && CARGO_TARGET_DIR="$root/target" cargo check --offline --quiet -p lexforge-python)
  echo "sdist: the module compiles from the unpacked archive"
fi
