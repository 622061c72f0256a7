#!/usr/bin/env bash
# Experts x k on the markov toy language (configs/markov.yaml: 4 domains, vocabulary 32, 2 MoE
# layers), one `moe-sim sweep`, then a table of the final evaluation per setting:
#   task_loss       eval cross-entropy (without the auxiliary losses)
#   loss_gap        task_loss - the exact ideal loss (what the model has left to learn)
#   spec_nmi        NMI between the top-1 expert and the domain (mean over the MoE layers)
#   spec_nmi_token  NMI between the top-1 expert and the current token id (layers.csv, same mean)
# so one sees whether experts specialise by domain or by token. Default grid: experts.count
# 4, 8, 16, 32 x router.k 1, 2, 4 (12 runs, 1500 steps each), about 2 minutes on 2 cores.
#   experiments/markov_sweep.sh [OUT] [KEY=V1,V2 | KEY=VALUE ...]
# Extra arguments go to `moe-sim sweep`: another grid (experts.count=8,16), fixed overrides
# (train.steps=500), a seed axis (seed=1,2: the table then shows the mean over seeds).
# Environment: CONFIG (default configs/markov.yaml; configs/markov_transformer.yaml for the
# transformer), JOBS (parallel runs, default 2), MOESIM (the binary). Running it again skips the
# finished runs (docs/sweeps.md, "Resume"); FORCE=1 reruns them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MOESIM:-$root/build/release/moe-sim}
config=${CONFIG:-$root/configs/markov.yaml}
out=${1:-sweeps/markov_sweep}
shift || true
grid=()
has_experts=0 has_k=0
for a in "$@"; do
  case "$a" in
    experts.count=*) has_experts=1 ;;
    router.k=*) has_k=1 ;;
  esac
done
[[ $has_experts == 1 ]] || grid+=("experts.count=4,8,16,32")
[[ $has_k == 1 ]] || grid+=("router.k=1,2,4")
force=()
[[ ${FORCE:-0} == 1 ]] && force=(--force)
"$bin" sweep "$config" "${grid[@]}" "$@" --out "$out" --jobs "${JOBS:-2}" --quiet "${force[@]}"
python3 - "$out" <<'PY'
# One row per (experts.count, router.k), mean over seeds and MoE layers of the final eval row.
import csv, os, sys
from collections import defaultdict

out = sys.argv[1]
with open(os.path.join(out, "summary.csv"), newline="") as f:
    runs = list(csv.DictReader(f))


def last_eval_mean(path, column):
    """Mean over the MoE layers of `column` on the last eval step of layers.csv."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "eval"]
    last = max(int(r["step"]) for r in rows)
    vals = [float(r[column]) for r in rows if int(r["step"]) == last]
    return sum(vals) / len(vals)


cells = defaultdict(list)
for r in runs:
    if r["status"] != "completed":
        print(f"skipped {r['run']}: status {r['status']}", file=sys.stderr)
        continue
    tok = last_eval_mean(os.path.join(out, r["run"], "layers.csv"), "spec_nmi_token")
    key = (int(r["experts.count"]), int(r["router.k"]))
    task_loss = float(r["loss_gap"]) + float(r["ideal_loss"])
    cells[key].append((float(r["loss_gap"]), float(r["spec_nmi"]), tok, task_loss))

cols = ["experts", "k", "seeds", "task_loss", "loss_gap", "spec_nmi", "spec_nmi_token"]
print("| " + " | ".join(cols) + " |")
print("| " + " | ".join(["---:"] * len(cols)) + " |")
for (n, k), vals in sorted(cells.items()):
    m = [sum(v[i] for v in vals) / len(vals) for i in range(4)]
    print(f"| {n} | {k} | {len(vals)} | {m[3]:.3f} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} |")
ideal = {r.get("ideal_loss") for r in runs if r["status"] == "completed"}
if len(ideal) == 1:
    print(f"\nideal loss (eval set): {float(ideal.pop()):.4f}")
PY
