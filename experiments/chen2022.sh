#!/usr/bin/env bash
# Chen, Deng, Wu, Gu and Li 2022, "Towards Understanding the Mixture-of-Experts Layer in Deep
# Learning": the four data settings (configs/chen2022/) for the nonlinear MoE, the linear MoE and
# the single-expert baselines (one patch CNN of J channels), over seeds, and their Table 1 layout:
# test accuracy mean ± std and dispatch entropy mean ± std per model and setting, written to
# OUT/chen2022.csv and printed. Then
#   tools/plot/chen2022.py OUT -o entropy.png
# draws the dispatch entropy over training (the exploration stage, then router learning).
#
#   experiments/chen2022.sh [--seeds N] [--settings "1 2 3 4"] [--models "moe_nonlinear ..."]
#                           [--channels "40 64 256"] [--protocol configs|official]
#                           [OUT_DIR] [KEY=VALUE ...]
# Defaults: 10 seeds (1..N), all four settings, the models moe_nonlinear moe_linear
# single_nonlinear single_linear, the single experts at J = 40, 64 and 256; OUT_DIR
# runs/chen2022; overrides go to every run. --protocol official trains as the official code's
# loops do: the MoEs 501 steps with train.early_stop.loss_rise 0.02 (checked from the first
# step), the single experts 801 steps with the same rule checked after step 501, each with a
# train row at every step (train.log_every 1: the last training step's dispatch entropy is that
# step's own); the default (configs) runs the configs as committed. A run whose summary.csv says completed is not run
# again (FORCE=1 reruns). Cost on 2 cores: an MoE run (600 full-batch steps of 16,000
# examples) about 20-50 s; a single expert of J = 256 (800 steps) about 9 minutes; J = 40 and
# 64 a minute or two.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MOESIM:-$root/build/release/moe-sim}
seeds=10
settings="1 2 3 4"
models="moe_nonlinear moe_linear single_nonlinear single_linear"
channels="40 64 256"
protocol=configs
out=runs/chen2022
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --channels) channels=$2; shift 2 ;;
    --protocol) protocol=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *=*) break ;;
    *) out=$1; shift ;;
  esac
done
mkdir -p "$out"
runs=()  # "setting model label dir" per run
for s in $settings; do
  for m in $models; do
    case "$m" in
      single_*) variants=$channels ;;
      *) variants="-" ;;
    esac
    for j in $variants; do
      label=$m
      extra=()
      if [ "$j" != "-" ]; then label="${m}_J$j"; extra=("experts.patch.channels=$j"); fi
      if [ "$protocol" = official ]; then
        case "$m" in
          single_*) extra+=(train.steps=801 train.early_stop.after_step=501) ;;
          *) extra+=(train.steps=501) ;;
        esac
        extra+=(train.early_stop.loss_rise=0.02 train.log_every=1)
      elif [ "$protocol" != configs ]; then
        echo "chen2022.sh: --protocol is configs or official, not '$protocol'" >&2
        exit 2
      fi
      for seed in $(seq 1 "$seeds"); do
        dir="$out/s$s/$label/seed$seed"
        runs+=("$s $label $dir")
        # a run stopped early (status interrupted or failed) is run again
        if [ -f "$dir/summary.csv" ] && grep -q ',completed,' "$dir/summary.csv" &&
          [ -z "${FORCE:-}" ]; then continue; fi
        echo "chen2022.sh: setting $s, $label, seed $seed" >&2
        "$bin" run "$root/configs/chen2022/s${s}_$m.yaml" seed="$seed" "${extra[@]}" "$@" \
          --out "$dir" --force --quiet
      done
    done
  done
done
printf '%s\n' "${runs[@]}" > "$out/runs.txt"
python3 - "$out" <<'PY'
# chen2022.csv: one row per model and setting, the mean and std over seeds of the final test
# accuracy (%) and of the dispatch entropy: on the last training step (the paper's measure: the
# training set routed with the gating noise) and at the final evaluation (held-out, no noise).
import csv, math, os, sys
from collections import OrderedDict
out = sys.argv[1]
groups = OrderedDict()
for line in open(os.path.join(out, "runs.txt")):
    s, label, d = line.split()
    with open(os.path.join(d, "summary.csv"), newline="") as f:
        summ = next(csv.DictReader(f))
    h_train = ""
    with open(os.path.join(d, "layers.csv"), newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == "train" and r["dispatch_entropy"] != "":
                h_train = r["dispatch_entropy"]
    g = groups.setdefault((label, s), {"acc": [], "h_train": [], "h_eval": []})
    g["acc"].append(100.0 * float(summ["accuracy"]))
    if h_train != "":
        g["h_train"].append(float(h_train))
    if summ["dispatch_entropy"] != "":
        g["h_eval"].append(float(summ["dispatch_entropy"]))

def ms(v):
    if not v:
        return "", ""
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd

rows = []
for (label, s), g in groups.items():
    row = {"model": label, "setting": s, "seeds": len(g["acc"])}
    for k in ["acc", "h_train", "h_eval"]:
        m, sd = ms(g[k])
        row[k + "_mean"], row[k + "_std"] = m, sd
    rows.append(row)
with open(os.path.join(out, "chen2022.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)

def pm(row, k, fmt):
    if row[k + "_mean"] == "":
        return "-"
    return f"{row[k + '_mean']:{fmt}} ± {row[k + '_std']:{fmt}}"

print("Table 1 layout (Chen et al. 2022): test accuracy (%) and dispatch entropy (nats; ln 4 = 1.386"
      " is uniform), mean ± std over seeds")
print("dispatch entropy: train = the last training step's routing (with the gating noise, as the"
      " paper measures it); eval = the final evaluation (held-out set, no noise)")
width = max(len(r["model"]) for r in rows)
print(f"{'model':{width}s}  setting  seeds  {'test accuracy':>16s}  {'entropy (train)':>16s}"
      f"  {'entropy (eval)':>16s}")
for r in rows:
    print(f"{r['model']:{width}s}  {r['setting']:>7s}  {r['seeds']:5d}  {pm(r, 'acc', '.2f'):>16s}"
          f"  {pm(r, 'h_train', '.3f'):>16s}  {pm(r, 'h_eval', '.3f'):>16s}")
PY
