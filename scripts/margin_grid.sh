#!/usr/bin/env bash
# The measurement behind the default margin κ (`min_margin`, docs/attack.md "The margin κ").
#
# For each model and each κ of the grid: attack all 60,000 training images (targeted, random targets,
# batch 10,000, the default settings otherwise), then re-evaluate the stored successes with
# `blindspot verify` in float64, float32 at batch 1, float32 at batch 10,000, and with 1 and 2 libtorch
# threads. Writes <out>/table.md (one line per model and κ) and <out>/scaling.md (how the float32 error
# of the margin grows with the logits' magnitude, from the float64 re-evaluation of the κ = 0 runs).
#
# usage: scripts/margin_grid.sh <models dir holding N100-100-10/ and softmax1/> <out dir> [κ ...]
#   models trained with: blindspot train experiments/paper.yaml --model N100-100-10 --out <models>/N100-100-10
#                        (and --model softmax1)
#   env: BLINDSPOT (binary, default target/release/blindspot), MODELS ("N100-100-10 softmax1"),
#        ATTACK_THREADS (threads of the attacks, default: libtorch's choice)
# Finished attacks are skipped (an attack folder with summary.json), so the script resumes.
set -euo pipefail
models_dir=${1:?models dir}
out=${2:?out dir}
shift 2
grid=("$@")
[ ${#grid[@]} -gt 0 ] || grid=(0 1e-5 3e-5 1e-4 3e-4 1e-3 3e-3 1e-2)
bin=${BLINDSPOT:-target/release/blindspot}
models=${MODELS:-"N100-100-10 softmax1"}
export BLINDSPOT_NO_PROGRESS=1
mkdir -p "$out"
threads=()
[ -n "${ATTACK_THREADS:-}" ] && threads=(--threads "$ATTACK_THREADS")

for m in $models; do
  for k in "${grid[@]}"; do
    dir="$out/$m/k$k"
    if [ ! -f "$dir/summary.json" ]; then
      echo "== attack $m κ=$k"
      "$bin" attack --model "$models_dir/$m" --split train --batch 10000 --min-margin "$k" \
        "${threads[@]}" --out "$dir"
    fi
    for mode in f64 b1 b10000 t1 t2; do
      case $mode in
        f64) args=(--precision f64 --batch 10000) ;;
        b1) args=(--batch 1) ;;
        b10000) args=(--batch 10000) ;;
        t1) args=(--threads 1 --batch 10000) ;;
        t2) args=(--threads 2 --batch 10000) ;;
      esac
      if [ ! -f "$dir/verify-$mode.json" ]; then
        extra=()
        [ "$mode" = f64 ] && [ "$k" = 0 ] && extra=(--csv "$dir/verify-f64.csv")
        "$bin" verify --adversarials "$dir" "${args[@]}" "${extra[@]}" --json "$dir/verify-$mode.json" \
          > "$dir/verify-$mode.txt"
        head -1 "$dir/verify-$mode.txt"
      fi
    done
  done
done

python3 - "$out" $models -- "${grid[@]}" <<'EOF'
import json, sys, os, csv, math
out = sys.argv[1]
sep = sys.argv.index("--")
models, grid = sys.argv[2:sep], sys.argv[sep + 1:]
modes = [("f64", "float64"), ("b1", "f32 batch 1"), ("b10000", "f32 batch 10,000"),
         ("t1", "1 thread"), ("t2", "2 threads")]
lines = ["| model | κ | success | already adv. | mean distortion | vs κ = 0 | evals / image | vs κ = 0 | attack s | "
         + " | ".join(f"not adversarial: {t}" for _, t in modes) + " | smallest margin (stored / float64) |",
         "|---" * (10 + len(modes)) + "|"]
for m in models:
    base = None
    for k in grid:
        d = os.path.join(out, m, f"k{k}")
        s = json.load(open(os.path.join(d, "summary.json")))
        if base is None:
            base = s
        v = {mode: json.load(open(os.path.join(d, f"verify-{mode}.json"))) for mode, _ in modes}
        flips = [str(len(v[mode]["flipped"])) for mode, _ in modes]
        f64min = v["f64"]["margin_quantiles"][0][1]
        lines.append(
            f"| {m} | {k} | {s['successes']}/{s['examples']} | {s.get('already_adversarial', 0)} "
            f"| {s['mean_distortion']:.5f} | {100 * (s['mean_distortion'] / base['mean_distortion'] - 1):+.2f}% "
            f"| {s['evaluations_per_image']:.1f} | {100 * (s['evaluations_per_image'] / base['evaluations_per_image'] - 1):+.1f}% "
            f"| {s['seconds']:.0f} | " + " | ".join(flips)
            + f" | {s.get('smallest_margin', float('nan')):.2e} / {f64min:.2e} |")
open(os.path.join(out, "table.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# Scaling of the float32 error of the margin (stored: the attack's float32 verification at batch
# 10,000) against float64, by the logits' magnitude max_j |z_j|: if rounding were relative to the logits'
# scale, the error would grow in proportion to it (log-log slope 1).
sl = ["| model | max abs logit | examples | median abs err | 99.9% abs err | max abs err | median err / max abs logit |",
      "|---|---|---|---|---|---|---|"]
slopes = []
for m in models:
    p = os.path.join(out, m, f"k{grid[0]}", "verify-f64.csv")
    if not os.path.exists(p):
        continue
    rows = [(float(r["max_abs_logit"]), abs(float(r["margin"]) - float(r["stored_margin"])))
            for r in csv.DictReader(open(p)) if r["stored_margin"].lower() != "nan"]
    edges = [0, 2, 4, 8, 16, 32, 64, 128, 1e9]
    pts = []
    for lo, hi in zip(edges, edges[1:]):
        sel = [(z, err) for z, err in rows if lo <= z < hi]
        if len(sel) < 20:
            continue
        e = sorted(err for _, err in sel)
        zs = sorted(z for z, _ in sel)
        q = lambda f: e[min(len(e) - 1, int(round(f * (len(e) - 1))))]
        zmed = zs[len(zs) // 2]
        rel = sorted(err / z for z, err in sel)
        pts.append((math.log(zmed), math.log(max(q(0.5), 1e-30))))
        hi_s = "∞" if hi > 1e8 else f"{hi}"
        sl.append(f"| {m} | [{lo}, {hi_s}) | {len(e)} | {q(0.5):.1e} | {q(0.999):.1e} | {e[-1]:.1e} "
                  f"| {rel[len(rel) // 2]:.1e} |")
    if len(pts) >= 2:
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        slopes.append(f"{m}: log-log slope of the median error against the median |z| of the bins: {slope:.2f}")
open(os.path.join(out, "scaling.md"), "w").write("\n".join(sl + [""] + slopes) + "\n")
print("\n".join(sl + [""] + slopes))
EOF
