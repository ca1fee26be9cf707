#!/usr/bin/env bash
# Issue 15, item 2 in one run (≤ 8 minutes on one GPU): every number goes to one results file.
#
#   scripts/gpu_validate.sh [--device cuda|cuda:N|cpu] [--small] [--out FILE] [--n100 MODEL_DIR]
#
# Steps (each capped by `timeout`; a step that fails or runs out of time is written as FAILED/TIMEOUT and
# the run goes on):
#   0. machine, GPU, torch, binary sizes;
#   1. the device suite (tests/device.rs) on the device, CUDA-only checks included (scripts/test_device.sh);
#   2. Table 1: N100-100-10 over the 60,000 training images, `blindspot attack --device D` and the same on
#      the CPU of the same machine: success, mean distortion, images/s, and the relative differences;
#   3. the batched PyTorch peer of the same attack on the same device, same images and targets
#      (scripts/peer_lbfgs_torch.py);
#   4. random-weight torchvision AlexNet at 224 (scripts/export_torchvision.py) and 256 random images:
#      units scan of features.12 (`blindspot bench units`) vs scripts/bench_units_torch.py, spectral bounds
#      (`blindspot spectral --mode circular`) vs scripts/peer_spectral_torch.py;
#   5. Fig 5: `blindspot attack --data <images> --first 64` on that AlexNet: time and success;
#   6. determinism: the same attack (seed 0, first 2,000 images) twice, then twice with
#      BLINDSPOT_DETERMINISTIC=1: identical adversarials or not, and the time each took.
#
# --small (or BLINDSPOT_VALIDATE_SMALL=1) shrinks every size for a rehearsal on a CPU (200 attack images,
# 20 for the peer, AlexNet at 64×64, 8 images, Fig 5 on 2 images, determinism on 50).
#
# What it runs: the carried binaries (BLINDSPOT_BIN, default target/dist/blindspot; BLINDSPOT_DEVICE_TEST_BIN,
# default the newest target/dist/deps/device-*), PYTHON (default /opt/torch/.venv/bin/python, else
# .venv/bin/python), with LD_LIBRARY_PATH pointing at that Python's torch/lib (the binary's libtorch). The
# N100-100-10 model folder: --n100 (default runs/paper/models/N100-100-10). MNIST: assets/mnist.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dev=cuda
small="${BLINDSPOT_VALIDATE_SMALL:-0}"
out=""
n100="runs/paper/models/N100-100-10"
while [ $# -gt 0 ]; do
    case "$1" in
    --device) dev="$2"; shift 2 ;;
    --small) small=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --n100) n100="$2"; shift 2 ;;
    *) echo "usage: $0 [--device D] [--small] [--out FILE] [--n100 DIR]" >&2; exit 2 ;;
    esac
done
work="${BLINDSPOT_VALIDATE_WORK:-$(mktemp -d /tmp/gpu_validate.XXXXXX)}"
mkdir -p "$work"
out="${out:-$work/results.txt}"
if [ "$small" = 1 ]; then
    n_attack=200 n_peer=20 size=64 n_images=8 n_fig5=2 n_det=50 batch=200 fig5_iter=20
else
    n_attack=60000 n_peer=60000 size=224 n_images=256 n_fig5=64 n_det=2000 batch=10000 fig5_iter=100
fi

bin="${BLINDSPOT_BIN:-target/dist/blindspot}"
[ -x "$bin" ] || bin=target/release/blindspot
tbin="${BLINDSPOT_DEVICE_TEST_BIN:-$(ls -t target/dist/deps/device-* 2>/dev/null | grep -v '\.d$' | head -n 1)}"
py="${PYTHON:-/opt/torch/.venv/bin/python}"
[ -x "$py" ] || py=.venv/bin/python
tlib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
export LD_LIBRARY_PATH="${tlib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export BLINDSPOT_NO_PROGRESS=1
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"

t_start=$(date +%s)
say() { echo "$*" | tee -a "$out"; }
# step NAME SECONDS CMD...: runs CMD under a time cap, logs to $work/NAME.log, records its wall time.
step() {
    local name="$1" cap="$2"
    shift 2
    local t0 t1 rc
    t0=$(date +%s.%N)
    timeout "$cap" "$@" >"$work/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    if [ $rc -eq 0 ]; then
        say "$name: ok in ${secs} s"
    elif [ $rc -eq 124 ]; then
        say "$name: TIMEOUT after ${cap} s (log: $work/$name.log)"
    else
        say "$name: FAILED rc=$rc in ${secs} s: $(tail -n 1 "$work/$name.log")"
    fi
    return $rc
}
# json FILE KEYS...: prints `key=value` for the top-level keys of a JSON file.
json() {
    local f="$1"
    shift
    "$py" - "$f" "$@" <<'EOF' 2>/dev/null || echo "(no $1)"
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(f"{k}={d.get(k)}" for k in sys.argv[2:]))
EOF
}

: >"$out"
say "# scripts/gpu_validate.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) device=$dev small=$small work=$work"
say "host: $(hostname); cpus: $(nproc); gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1 || echo none)"
say "python: $py ($("$py" -c 'import torch; print(torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -n 1))"
say "binary: $bin ($(stat -c %s "$bin" 2>/dev/null) bytes); device test binary: ${tbin:-none} ($(stat -c %s "$tbin" 2>/dev/null) bytes)"
say "blindspot: $("$bin" --version 2>&1 | head -n 1)"

# 1. The device suite.
if [ -n "$tbin" ]; then
    BLINDSPOT_DEVICE_TEST_BIN="$tbin" BLINDSPOT_TEST_DEVICE="$dev" step device_suite 180 scripts/test_device.sh
    grep -E "^test result|NOT RUN|FAILED|panicked" "$work/device_suite.log" | head -n 20 | tee -a "$out"
else
    say "device_suite: NOT RUN (no device test binary: cargo test --profile dist --test device --no-run)"
fi

# 2. Table 1: N100-100-10 on the device and on the CPU.
common=(--model "$n100" --split train --first "$n_attack" --batch "$batch" --seed 0)
step attack_dev 240 "$bin" attack "${common[@]}" --device "$dev" --out "$work/attack_dev"
say "  attack on $dev: $(json "$work/attack_dev/summary.json" examples success_rate mean_distortion images_per_second seconds)"
if [ "$dev" != cpu ]; then
    step attack_cpu 240 "$bin" attack "${common[@]}" --device cpu --out "$work/attack_cpu"
    say "  attack on cpu: $(json "$work/attack_cpu/summary.json" examples success_rate mean_distortion images_per_second seconds)"
    "$py" - "$work/attack_dev/summary.json" "$work/attack_cpu/summary.json" <<'EOF' 2>&1 | tee -a "$out"
import json, sys
g, c = (json.load(open(p)) for p in sys.argv[1:])
ds = abs(g["success_rate"] - c["success_rate"]) / max(c["success_rate"], 1e-12)
dd = abs(g["mean_distortion"] - c["mean_distortion"]) / c["mean_distortion"]
ok = "within 1%" if ds <= 0.01 and dd <= 0.01 else "NOT within 1%"
print(f"  device vs cpu: success {ds:.2%} apart, mean distortion {dd:.2%} apart ({ok}); speed-up {g['images_per_second'] / c['images_per_second']:.1f}x")
EOF
fi

# 3. The PyTorch peer of the same attack, same images and targets.
peer_dev="$dev"
step peer_attack 240 "$py" scripts/peer_lbfgs_torch.py --model "$n100" --ours "$work/attack_dev/attack.csv" \
    --n "$n_peer" --batch "$batch" --device "$peer_dev" --out "$work/peer_attack.json"
say "  peer attack: $(json "$work/peer_attack.json" examples success_rate mean_distortion images_per_second seconds)"

# 4. AlexNet 224 (random weights): units scan and spectral bounds, ours vs PyTorch.
step export_alexnet 120 "$py" scripts/export_torchvision.py --out "$work/alexnet.pt" --size "$size" --seed 0
step make_images 120 "$py" scripts/bench_units_torch.py --model "$work/alexnet.pt" --images "$work/images" \
    --make-images "$n_images" --device "$dev" --layers features.12 --workers 4
say "  units peer (bench_units_torch.py): $(grep -iE "images/s|img/s" "$work/make_images.log" | tail -n 3 | tr '\n' ' ')"
step units_ours 180 "$bin" bench units --model "$work/alexnet.pt" --data "$work/images" --layer features.12 \
    --device "$dev" --batch 64
say "  units ours: $(tail -n 1 "$work/units_ours.log")"
step spectral_ours 180 "$bin" spectral --model "$work/alexnet.pt" --input-shape "3,$size,$size" --mode circular \
    --ascent-steps 0 --device "$dev" --out "$work/spectral"
"$py" - "$work/spectral/bounds.json" <<'EOF' 2>&1 | tee -a "$out"
import json, sys
d = json.load(open(sys.argv[1]))
t = d.get("analysis", {}).get("timings", {})
print("  spectral ours, per-layer s:", json.dumps(t))
EOF
step spectral_peer 180 "$py" scripts/peer_spectral_torch.py --model "$work/alexnet.pt" --size "$size" \
    --device "$dev" --out "$work/spectral_peer.json"
say "  spectral peer: $(json "$work/spectral_peer.json" seconds timings)"

# 5. Fig 5 on the random AlexNet.
step fig5 240 "$bin" attack --model "$work/alexnet.pt" --data "$work/images" --first "$n_fig5" \
    --device "$dev" --max-iter "$fig5_iter" --pgtol 1e-6 --out "$work/fig5"
say "  fig5: $(json "$work/fig5/summary.json" examples success_rate mean_distortion images_per_second seconds)"

# 6. Determinism: the same seed twice, then twice in libtorch's deterministic mode.
det=(--model "$n100" --split train --first "$n_det" --batch "$n_det" --seed 0 --device "$dev")
for run in a b; do
    step "det_$run" 120 "$bin" attack "${det[@]}" --out "$work/det_$run"
    BLINDSPOT_DETERMINISTIC=1 step "detmode_$run" 120 "$bin" attack "${det[@]}" --out "$work/detmode_$run"
done
"$py" - "$work" <<'EOF' 2>&1 | tee -a "$out"
import json, sys
from safetensors.torch import load_file
w = sys.argv[1]
def same(a, b):
    x, y = (load_file(f"{w}/{r}/adversarial.safetensors")["adversarial"] for r in (a, b))
    return bool((x == y).all()), float((x - y).abs().max())
def secs(r):
    return json.load(open(f"{w}/{r}/summary.json"))["seconds"]
for mode, a, b in (("default", "det_a", "det_b"), ("BLINDSPOT_DETERMINISTIC=1", "detmode_a", "detmode_b")):
    eq, diff = same(a, b)
    print(f"  determinism ({mode}): identical={eq} max|diff|={diff:.3g}; seconds {secs(a):.1f}, {secs(b):.1f}")
EOF
say "total: $(($(date +%s) - t_start)) s; results in $out"
