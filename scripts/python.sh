#!/usr/bin/env bash
# The Python package (python/: `import blindspot`; docs/python.md).
#
#     scripts/python.sh install        # build it and install it into the project's virtualenv (.venv)
#     scripts/python.sh test [ARGS]    # install, then run its tests (pytest python/tests ARGS)
#
# `install` (the default) makes the virtualenv if needed (scripts/setup.sh), builds a release wheel with
# maturin into target/wheels/ and installs it with pip --no-deps (torch is already the venv's
# torch==2.11.0). The extension links that torch's libtorch through the run path $ORIGIN/../torch/lib;
# nothing of libtorch is copied into the wheel. Idempotent; concurrent runs (two clones sharing the cached
# venv) take turns.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmd="${1:-install}"
[ $# -gt 0 ] && shift
case "$cmd" in
  install | test) ;;
  *) echo "usage: scripts/python.sh [install | test [pytest args]]" >&2; exit 2 ;;
esac
bash scripts/setup.sh >/dev/null
venv="$(readlink -f "$root/.venv")"
# maturin and pytest, pinned to the versions this was tested with.
if ! "$venv/bin/python" -c 'import maturin, pytest' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "maturin==1.16.0" "pytest==9.2.0"
fi
# torch-sys's build script asks `python` (with VIRTUAL_ENV set) for Python's include folder.
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
exec 9>"$venv/.blindspot-python.lock"
flock 9
t0=$(date +%s)
wheels="$root/target/wheels"
rm -f "$wheels"/blindspot-*.whl
maturin build --release --quiet -m python/Cargo.toml --interpreter "$venv/bin/python" --out "$wheels"
pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheels"/blindspot-*.whl
python -c 'import blindspot; print("[python] blindspot", blindspot.__version__, "(libtorch", blindspot.torch_version() + ") installed in", blindspot.__file__.rsplit("/", 2)[0])'
echo "[python] build + install: $(($(date +%s) - t0)) s"
if [ "$cmd" = test ]; then
  # The tests compare with the CLI: the debug binary `cargo test` builds, else build it.
  if [ -z "${BLINDSPOT_CLI:-}" ]; then
    cargo build --quiet --bin blindspot
    export BLINDSPOT_CLI="$root/target/debug/blindspot"
  fi
  python -m pytest -q python/tests "$@"
fi
