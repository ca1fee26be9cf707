#!/usr/bin/env bash
# Peak resident memory of `blindspot units` (forward only) and `blindspot attack` (few iterations per
# image) over generated 224×224 image folders of growing size (issue 13, item 8): is it flat in N?
#
#   scripts/bench_memory.sh [UNITS_SIZES] [ATTACK_SIZES]    e.g. scripts/bench_memory.sh "2000 10000" "50 200"
#
# Model: tests/fixtures/flat/flat_alexnet.pt (AlexNet layout, widths /16, 224×224 input; a *small net*,
# so the measurement is of the data path, not of the model). Images: seeded smooth colour fields, 224×224
# JPEG (~5 KB each), made by python (PIL) under $TMPDIR, deleted afterwards. Peak RSS from /usr/bin/time -v.
# Prints one line per run: command, N, peak RSS (MB), wall seconds; plus date, machine and `uptime`.
set -euo pipefail
cd "$(dirname "$0")/.."
UNITS_SIZES=${1:-"2000 10000"}
ATTACK_SIZES=${2:-"50 200"}
BIN=${BIN:-target/debug/blindspot}
PY=${PY:-.venv/bin/python}
MODEL=tests/fixtures/flat/flat_alexnet.pt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_memory.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "date: $(date -Iseconds)  machine: $(uname -n), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB"
echo "uptime: $(uptime)"

gen() { # gen N DIR: N seeded 224×224 JPEGs in DIR (flat folder)
  "$PY" - "$1" "$2" <<'PY'
import os, sys
import numpy as np
from PIL import Image
n, d = int(sys.argv[1]), sys.argv[2]
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(2014)
for i in range(n):
    low = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    Image.fromarray(low).resize((224, 224), Image.BILINEAR).save(os.path.join(d, f"{i:06}.jpg"), quality=80)
PY
}

measure() { # measure LABEL N CMD...: runs CMD under /usr/bin/time -v, prints peak RSS
  local label=$1 n=$2; shift 2
  /usr/bin/time -v "$@" >"$WORK/out.txt" 2>"$WORK/time.txt" || { tail -5 "$WORK/time.txt"; exit 1; }
  local rss wall
  rss=$(awk -F: '/Maximum resident set size/{print $2}' "$WORK/time.txt")
  wall=$(awk '/Elapsed \(wall clock\)/{print $NF}' "$WORK/time.txt")
  printf '%-7s N=%-6s peak RSS %7.1f MB  wall %s\n' "$label" "$n" "$(echo "$rss/1024" | bc -l)" "$wall"
}

MAX=0
for n in $UNITS_SIZES $ATTACK_SIZES; do if [ "$n" -gt "$MAX" ]; then MAX=$n; fi; done
gen "$MAX" "$WORK/all"
for n in $UNITS_SIZES; do
  mkdir -p "$WORK/u$n" && ls "$WORK/all" | head -n "$n" | while read -r f; do ln "$WORK/all/$f" "$WORK/u$n/$f"; done
  measure units "$n" "$BIN" units --model "$MODEL" --data "$WORK/u$n" --layer features.12 --batch 256 \
    --no-figures --bootstrap 10 --out "$WORK/units$n" --log warn
done
for n in $ATTACK_SIZES; do
  measure attack "$n" "$BIN" attack --model "$MODEL" --data "$WORK/all" --first "$n" --untargeted \
    --max-iter 2 --c-rel-tol 100 --batch 50 --threads 1 --out "$WORK/attack$n" --log warn
done
echo "uptime: $(uptime)"
