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
cargo fmt --all --check
cargo clippy --all-targets --quiet -- -D warnings -W clippy::too_many_lines
# Tests that spawn many libtorch processes run faster with one intra-op thread each on 2 cores.
cargo test --no-fail-fast -- --test-threads=2 "$@"
# The Python package (python/, docs/python.md): built and installed into the venv (scripts/python.sh), then
# its pytest suite, which compares with the CLI binary the tests above built.
BLINDSPOT_CLI="$root/target/debug/blindspot" bash scripts/python.sh test
# The Slurm end-to-end test (tests/slurm.rs, #[ignore]d in the run above) submits a small experiment to a
# one-node cluster on this machine (scripts/slurm/local-cluster.sh; docs/slurm.md) and stops it at the end.
# It needs root; where the cluster cannot start it is reported as NOT RUN, never as passed.
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm e2e: NOT RUN (not root: the local Slurm cluster needs root)"
else
    rc=0
    out=$(scripts/slurm/local-cluster.sh start 2>&1) || rc=$?
    if [ "$rc" -eq 3 ]; then
        echo "slurm e2e: NOT RUN ($(printf '%s\n' "$out" | tail -n 1))"
    elif [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out"
        echo "slurm e2e: FAILED (the local Slurm cluster did not start)"
        exit 1
    else
        cargo test --test slurm -- --ignored --test-threads=1
        echo "slurm e2e: passed"
    fi
fi
