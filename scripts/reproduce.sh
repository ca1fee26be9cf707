#!/usr/bin/env bash
# Command 1 of the README: set everything up (cached libtorch venv, release build) and run the quick paper
# reproduction (experiments/quick.yaml), then print where its report is. Idempotent: a second run reuses the
# venv, the build and every finished stage. Extra arguments go to `blindspot run` (e.g. --force).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
echo "[reproduce] building blindspot (release; the first build compiles libtorch's C++ wrapper, ~5 min on 2 cores)"
cargo build --release --quiet
experiment="${BLINDSPOT_EXPERIMENT:-experiments/quick.yaml}"
./target/release/blindspot run "$experiment" "$@"
