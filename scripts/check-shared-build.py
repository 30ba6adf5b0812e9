"""Checks that `cargo test`, the CLI build of scripts/setup.sh and the wheel build compile
third-party crates with the same features, so they reuse one compiled burn (~10 min cold).

Cargo unifies features per invocation: `cargo test --workspace` sees every member's
dependencies and dev-dependencies, `maturin build` only lexforge-python's. If a dev-dependency
enables an extra feature on a crate burn also uses (criterion's itertools turning on
`either/use_std`, which rayon uses, did exactly that), that crate and everything above it,
burn included, is compiled twice. This script compares the two feature sets with `cargo tree`
and fails, naming the crates, if any third-party crate differs.

Run from the repository root: python3 scripts/check-shared-build.py
"""

from __future__ import annotations

import re
import subprocess
import sys

# Each must match its invocation: `cargo test` in scripts/test.sh, the CLI build in
# scripts/setup.sh, and the wheel (maturin builds lexforge-python alone).
OTHER_BUILDS = {
    "cargo test": (["--workspace", "--exclude", "lexforge-benches"], "normal,build,dev"),
    "CLI build": (["-p", "lexforge-cli", "-p", "lexforge-python"], "normal,build"),
}
WHEEL_SELECTION = ["-p", "lexforge-python"]
LINE = re.compile(r"^(?P<name>\S+) (?P<version>v\S+)(?: \(.*?\))? \[(?P<features>[^\]]*)\]")


def features(selection: list[str], edges: str) -> dict[tuple[str, str], str]:
    out = subprocess.run(
        ["cargo", "tree", *selection, "-e", edges, "-f", "{p} [{f}]", "--prefix", "none"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[tuple[str, str], str] = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m and not m["name"].startswith("lexforge"):
            result[(m["name"], m["version"])] = m["features"]
    return result


def main() -> int:
    wheel = features(WHEEL_SELECTION, "normal,build")
    bad = []
    for label, (selection, edges) in OTHER_BUILDS.items():
        other = features(selection, edges)
        bad += [
            f"  {name} {version}: {label} [{other[key]}] vs wheel [{wheel[key]}]"
            for key in sorted(other.keys() & wheel.keys())
            for name, version in [key]
            if other[key] != wheel[key]
        ]
    if bad:
        print("check-shared-build: these crates would compile twice (features differ):")
        print("\n".join(bad))
        print("Give the builds the same features (or keep the dev-dependency out of cargo test).")
        return 1
    builds = ", ".join(OTHER_BUILDS)
    print(f"check-shared-build: {len(wheel)} crates, same features in the wheel, {builds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
