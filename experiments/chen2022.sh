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
# runs/chen2022; overrides go to every run. MARKDOWN=1 also prints the table in Markdown.
# --protocol official trains as the official code's loops do: the MoEs 501 steps with
# train.early_stop.loss_rise 0.02 (checked from the first step), the single experts 801 steps
# with the same rule checked after step 501, each with a train row at every step
# (train.log_every 1: the last training step's dispatch entropy is that step's own); the default
# (configs) runs the configs as committed. A run whose summary.csv says completed is not run
# again (FORCE=1 reruns). Cost on 2 shared cores, one thread: an MoE run (500-600 full-batch
# steps of 16,000 examples) 15-50 s; a single expert about 60 ms a step at J = 40, 90 ms at 64,
# 330 ms at 256 (800 steps of J = 256: 4-5 minutes; under --protocol official most single runs
# stop soon after step 501).
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
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
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
python3 - "$out" "${MARKDOWN:-}" <<'PY'
# chen2022.csv: one row per model and setting, the mean and std over seeds of the final test
# accuracy (%) and of the dispatch entropy: on the last training step (the paper's measure: the
# training set routed with the gating noise) and at the final evaluation (held-out, no noise);
# the steps run and how many seeds train.early_stop ended; and the official code's printed
# results beside them. runs.csv: one row per run. MARKDOWN=1 also prints the table as Markdown.
import csv, math, os, sys
from collections import OrderedDict
out, markdown = sys.argv[1], sys.argv[2] == "1"

# The official code's printed results (uclaml/MoE, synthetic_demo_s{1..4}.ipynb): the MoEs' loops
# of 10 runs (501 epochs, early stopping on), test accuracy (%) and the last training epoch's
# dispatch entropy, mean and population std (np.std) as printed; the single CNNs one run each
# (801 epochs, its own stopping rule), test accuracy (%). Their own data, not ours: one data set
# per setting, a new model each run.
OFFICIAL = {
    ("moe_nonlinear", "1"): (99.46, 0.55, 0.098, 0.088), ("moe_linear", "1"): (93.0, 2.11, 1.300, 0.044),
    ("moe_nonlinear", "2"): (98.1, 1.56, 0.183, 0.144), ("moe_linear", "2"): (89.49, 1.35, 1.262, 0.095),
    ("moe_nonlinear", "3"): (99.99, 0.02, 0.008, 0.011), ("moe_linear", "3"): (95.93, 1.34, 1.160, 0.100),
    ("moe_nonlinear", "4"): (98.92, 1.18, 0.089, 0.120), ("moe_linear", "4"): (93.3, 1.48, 1.160, 0.155),
}
SINGLE = {  # setting: (linear J40, cubic J40, linear J64, cubic J64, linear J256, cubic J256)
    "1": (68.31, 79.57, 70.94, 78.54, 68.92, 72.64), "2": (68.22, 77.38, 69.56, 74.04, 63.04, 52.09),
    "3": (74.30, 73.72, 74.81, 72.71, 74.54, 67.78), "4": (74.28, 70.26, 74.63, 68.60, 72.98, 61.65),
}
for s, v in SINGLE.items():
    for i, j in enumerate([40, 64, 256]):
        OFFICIAL[(f"single_linear_J{j}", s)] = (v[2 * i], None, None, None)
        OFFICIAL[(f"single_nonlinear_J{j}", s)] = (v[2 * i + 1], None, None, None)

groups = OrderedDict()
runs = []
for line in open(os.path.join(out, "runs.txt")):
    s, label, d = line.split()
    with open(os.path.join(d, "summary.csv"), newline="") as f:
        summ = next(csv.DictReader(f))
    h_train = ""
    with open(os.path.join(d, "layers.csv"), newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == "train" and r["dispatch_entropy"] != "":
                h_train = r["dispatch_entropy"]
    g = groups.setdefault((label, s), {"acc": [], "h_train": [], "h_eval": [], "steps": [],
                                       "stopped": 0})
    g["acc"].append(100.0 * float(summ["accuracy"]))
    if h_train != "":
        g["h_train"].append(float(h_train))
    if summ["dispatch_entropy"] != "":
        g["h_eval"].append(float(summ["dispatch_entropy"]))
    g["steps"].append(int(summ["steps"]))
    reason = summ.get("stop_reason", "")
    g["stopped"] += reason != ""
    runs.append({"setting": s, "model": label, "seed": os.path.basename(d).removeprefix("seed"),
                 "steps": summ["steps"], "stop_reason": reason,
                 "test_accuracy": summ["accuracy"], "dispatch_entropy_train": h_train,
                 "dispatch_entropy_eval": summ["dispatch_entropy"]})

def ms(v):
    # mean and population std (ddof 0, as the official code's np.std)
    if not v:
        return "", ""
    m = sum(v) / len(v)
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / len(v))

rows = []
for (label, s), g in groups.items():
    row = {"model": label, "setting": s, "seeds": len(g["acc"])}
    for k in ["acc", "h_train", "h_eval"]:
        m, sd = ms(g[k])
        row[k + "_mean"], row[k + "_std"] = m, sd
    row["steps_min"], row["steps_max"] = min(g["steps"]), max(g["steps"])
    row["early_stopped"] = g["stopped"]
    o = OFFICIAL.get((label, s), (None,) * 4)
    row["official_acc_mean"], row["official_acc_std"] = o[0], o[1]
    row["official_h_train_mean"], row["official_h_train_std"] = o[2], o[3]
    rows.append(row)
with open(os.path.join(out, "chen2022.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(runs[0]))
    w.writeheader()
    w.writerows(runs)

def pm(row, k, fmt):
    if row[k + "_mean"] in ("", None):
        return "-"
    if row[k + "_std"] is None or row["seeds"] == 1 and not k.startswith("official"):
        return f"{row[k + '_mean']:{fmt}}"
    return f"{row[k + '_mean']:{fmt}} ± {row[k + '_std']:{fmt}}"

def steps(row):
    a, b = row["steps_min"], row["steps_max"]
    return str(a) if a == b else f"{a}-{b}"

cols = [("model", lambda r: r["model"]), ("setting", lambda r: r["setting"]),
        ("seeds", lambda r: str(r["seeds"])), ("steps", steps),
        ("stopped early", lambda r: str(r["early_stopped"])),
        ("test accuracy (%)", lambda r: pm(r, "acc", ".2f")),
        ("official code (%)", lambda r: pm(r, "official_acc", ".2f")),
        ("entropy (train)", lambda r: pm(r, "h_train", ".3f")),
        ("official code", lambda r: pm(r, "official_h_train", ".3f")),
        ("entropy (eval)", lambda r: pm(r, "h_eval", ".3f"))]
print("Table 1 layout (Chen et al. 2022): test accuracy (%) and dispatch entropy (nats; ln 4 = 1.386"
      " is uniform), mean ± population std over seeds; 'official code': the official notebooks'"
      " printed results")
print("dispatch entropy: train = the last training row's routing (with the gating noise, as the"
      " paper measures it); eval = the final evaluation (held-out set, no noise)")
cells = [[f(r) for _, f in cols] for r in rows]
width = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(cols)]
print("  ".join(f"{h:>{width[i]}s}" for i, (h, _) in enumerate(cols)))
for c in cells:
    print("  ".join(f"{x:>{width[i]}s}" for i, x in enumerate(c)))
if markdown:
    print()
    print("| " + " | ".join(h for h, _ in cols) + " |")
    print("| " + " | ".join("---" for _ in cols) + " |")
    for c in cells:
        print("| " + " | ".join(c) + " |")
PY
