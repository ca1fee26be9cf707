#!/usr/bin/env bash
# The attack benchmarks of docs/benchmarks.md ("Attack at the machine's limit"), side by side in ONE run on
# one machine, so that the ratios share its load (run it on a quiet box; `uptime` is printed before and
# after):
#   1. Table 1's run: all 60,000 training images of MODEL, default settings, then the previous defaults
#      (`--c-search bisect --warm-start original`) on the same images (whole process, /usr/bin/time);
#   2. the first 2,000 test images: ours and the batched projected L-BFGS written in PyTorch
#      (scripts/peer_lbfgs_torch.py, same targets, same threads);
#   3. foolbox 2.4's `LBFGSAttack` (scripts/ref_attack_foolbox.py, 1 thread, per image) on the first
#      FB_N test images against ours on 10,000 test images at 2 and at 1 thread (images/s), and whole
#      processes: ours on 200 images (1 thread) against foolbox on the first 20.
# usage: scripts/bench_attack_peers.sh MODEL_DIR OUT_DIR [FB_N=100]
#   foolbox is not a dependency: install it apart, e.g. `.venv/bin/pip install --target /tmp/fbpkgs
#   foolbox==2.4.0 GitPython requests`, and set FOOLBOX_PATH=/tmp/fbpkgs (skipped when unset).
# Prints one JSON line per measurement; the write-up is by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench_attack_peers.sh MODEL_DIR OUT_DIR [FB_N]}
out=${2:?usage: bench_attack_peers.sh MODEL_DIR OUT_DIR [FB_N]}
fb_n=${3:-100}
bin=target/release/blindspot
py=.venv/bin/python
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
mkdir -p "$out"
echo "uptime before: $(uptime)"

timed() { # name, command...: whole-process wall seconds and peak RSS as JSON
  local name=$1; shift
  /usr/bin/time -f "{\"run\": \"$name\", \"wall_s\": %e, \"max_rss_kb\": %M}" "$@" 2>&1 >/dev/null | tail -1
}
summary() { # name, attack folder
  python3 -c "import json,sys; s=json.load(open(sys.argv[2]+'/summary.json')); print(json.dumps({'run': sys.argv[1], 'mean_distortion': s['mean_distortion'], 'evaluations_per_image': s['evaluations_per_image'], 'images_per_second': s['images_per_second'], 'success_rate': s['success_rate'], 'attack_seconds': s['seconds']}))" "$1" "$2"
}

# 1. Table 1 N100 60k
rm -rf "$out/60k" "$out/60k-prev"
timed ours-60k "$bin" attack --model "$model" --split train --out "$out/60k"
summary ours-60k "$out/60k"
timed prev-60k "$bin" attack --model "$model" --split train --c-search bisect --warm-start original --out "$out/60k-prev"
summary prev-60k "$out/60k-prev"

# 2. 2,000 test images: ours vs the PyTorch peer
rm -rf "$out/t2k"
timed ours-2k "$bin" attack --model "$model" --split test --first 2000 --batch 2000 --out "$out/t2k"
summary ours-2k "$out/t2k"
timed peer-2k "$py" scripts/peer_lbfgs_torch.py --model "$model" --ours "$out/t2k/attack.csv" --split test \
  --batch 2000 --device cpu --solver rows --out "$out/peer2k.json"
python3 -c "import json; r=json.load(open('$out/peer2k.json')); print(json.dumps({k: v for k, v in r.items() if not isinstance(v, (list, dict))}))"

# 3. foolbox
if [ -n "${FOOLBOX_PATH:-}" ]; then
  rm -rf "$out/t10k" "$out/t200"
  rm -rf "$out/t10k-2"
  timed ours-10k-2threads "$bin" attack --threads 2 --model "$model" --split test --out "$out/t10k-2"
  summary ours-10k-2threads "$out/t10k-2"
  timed ours-10k-1thread "$bin" attack --threads 1 --model "$model" --split test --out "$out/t10k"
  summary ours-10k-1thread "$out/t10k"
  PYTHONPATH=$FOOLBOX_PATH "$py" scripts/ref_attack_foolbox.py --model "$model" --ours "$out/t10k/attack.csv" \
    --n "$fb_n" --out "$out/fb$fb_n.json" >/dev/null
  python3 -c "import json; r=json.load(open('$out/fb$fb_n.json')); print(json.dumps({'run': 'foolbox-$fb_n', **{k: v for k, v in r.items() if k != 'per_image'}}))"
  timed ours-200-process-1thread "$bin" attack --threads 1 --model "$model" --split test --first 200 --out "$out/t200"
  PYTHONPATH=$FOOLBOX_PATH timed foolbox-20-process "$py" scripts/ref_attack_foolbox.py --model "$model" \
    --ours "$out/t200/attack.csv" --n 20 --out "$out/fb20.json"
else
  echo "FOOLBOX_PATH unset: foolbox runs skipped"
fi
echo "uptime after: $(uptime)"
