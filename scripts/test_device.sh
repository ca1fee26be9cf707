#!/usr/bin/env bash
# The device suite (tests/device.rs, issue 15) on the device named by BLINDSPOT_TEST_DEVICE (cpu when unset;
# cuda, cuda:N). The device-sensitive tests run on that device; the CUDA-only checks (#[ignore = "needs a
# CUDA device"]) run only when it names a GPU, and otherwise are listed one per line as NOT RUN — never as
# passed. A GPU that is named but not there fails the run.
#
#   scripts/test_device.sh                                   # here: cargo test --test device
#   BLINDSPOT_TEST_DEVICE=cuda scripts/test_device.sh        # on a GPU machine with cargo
#   BLINDSPOT_DEVICE_TEST_BIN=./device-test BLINDSPOT_TEST_DEVICE=cuda scripts/test_device.sh
#       # a carried test binary (cargo test --profile dist --test device --no-run; see README "CUDA"),
#       # run from the repository root (it finds tests/fixtures and assets/mnist there)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export BLINDSPOT_NO_PROGRESS=1
dev="${BLINDSPOT_TEST_DEVICE:-cpu}"
export BLINDSPOT_TEST_DEVICE="$dev"
run() {
    if [ -n "${BLINDSPOT_DEVICE_TEST_BIN:-}" ]; then
        "$BLINDSPOT_DEVICE_TEST_BIN" "$@"
    else
        cargo test --quiet --test device -- "$@"
    fi
}
case "$dev" in
cuda | cuda:*)
    echo "device suite on $dev (CUDA-only checks included)"
    run --include-ignored --test-threads=1
    ;;
*)
    echo "device suite on $dev"
    run
    # The CUDA-only checks, each reported as not run.
    run --list --ignored 2>/dev/null | sed -n 's/^\(.*\): test$/\1/p' | while read -r t; do
        echo "NOT RUN (needs a CUDA device; BLINDSPOT_TEST_DEVICE=$dev): $t"
    done
    ;;
esac
