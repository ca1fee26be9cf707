#!/usr/bin/env bash
# Command 2 of the README (and what .ci/run calls): set everything up and run the whole test suite.
# Idempotent; reuses the cached libtorch venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
export BLINDSPOT_NO_PROGRESS=1
# The checks of every commit: formatting, lints (functions over 150 lines refused, clippy.toml), then the
# tests (tests/architecture.rs checks the module dependency rules and file sizes).
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings -W clippy::too_many_lines
# Tests that spawn many libtorch processes run faster with one intra-op thread each on 2 cores.
cargo test --no-fail-fast -- --test-threads=2 "$@"
