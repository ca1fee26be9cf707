#!/usr/bin/env bash
# Command 2 of the README (and what .ci/run calls): set everything up and run the whole test suite.
# Idempotent; reuses the cached libtorch venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
export BLINDSPOT_NO_PROGRESS=1
# Tests that spawn many libtorch processes run faster with one intra-op thread each on 2 cores.
cargo test --no-fail-fast -- --test-threads=2 "$@"
