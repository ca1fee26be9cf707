#!/usr/bin/env bash
# Sets up everything blindspot needs, idempotently:
#   1. a cached Python virtualenv with torch==2.11.0 (its libtorch drives tch 0.24), numpy, scipy,
#      safetensors and torchvision==0.26.0 (--no-deps) for fixture and reference scripts;
#   2. the link `.libtorch` in the repository root that `.cargo/config.toml` hands to cargo as LIBTORCH.
# The venv lives in $BLINDSPOT_CACHE (default ~/.cache/blindspot) and is shared by every clone, so a second
# clone or a second run costs nothing. Nothing needs to be exported by the user.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${BLINDSPOT_CACHE:-$HOME/.cache/blindspot}"
venv="$cache/venv-torch-2.11.0"
stamp="$venv/.blindspot-complete-v1"
mkdir -p "$cache"

if [ ! -f "$stamp" ]; then
  echo "[setup] creating virtualenv with torch==2.11.0 in $venv (one time, ~2-4 minutes, ~5 GB)"
  # Serialise concurrent setups (e.g. CI and a developer on the same machine).
  exec 9>"$cache/.setup.lock"
  flock 9
  if [ ! -f "$stamp" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      torch==2.11.0 numpy scipy safetensors pillow
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps torchvision==0.26.0
    "$venv/bin/python" - <<'PY'
import torch, numpy, scipy, safetensors, torchvision
assert torch.__version__.startswith("2.11.0"), torch.__version__
print("[setup] torch", torch.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__)
PY
    touch "$stamp"
  fi
  flock -u 9
fi

torch_dir="$("$venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
ln -sfn "$torch_dir" "$root/.libtorch"
ln -sfn "$venv" "$root/.venv"
echo "[setup] libtorch: $torch_dir (linked as .libtorch); python: .venv/bin/python"
