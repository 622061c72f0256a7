#!/usr/bin/env bash
# Three balancing settings on the quick start config (Zipf-skewed clusters), side by side:
#   none     balance.alpha=0, balance.bias_rate=0
#   aux      balance.alpha=0.01 (Switch auxiliary loss)
#   bias     balance.alpha=0, balance.bias_rate=0.001 (auxiliary-loss-free, Wang et al. 2024)
# and the table of README.md from their summary.csv files. About 10 s on 2 cores.
#   experiments/balance_table.sh [OUT_DIR] [KEY=VALUE ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MOESIM:-$root/build/release/moe-sim}
out=${1:-runs/balance_table}
shift || true
mkdir -p "$out"
declare -A settings=(
  [none]="balance.alpha=0 balance.bias_rate=0"
  [aux]="balance.alpha=0.01 balance.bias_rate=0"
  [bias]="balance.alpha=0 balance.bias_rate=0.001"
)
for name in none aux bias; do
  # shellcheck disable=SC2086
  "$bin" run "$root/configs/quickstart.yaml" ${settings[$name]} "$@" --out "$out/$name" --force --quiet
done
python3 - "$out" <<'PY'
# The table of README.md ("Experiments"): one row per setting, the columns below, each
# right-aligned under its name; counts as integers, the rest with 3 decimals, "-" for an empty cell.
import csv, sys, os
out = sys.argv[1]
cols = ["accuracy", "max_vio", "effective_experts", "drop_rate", "dead_final"]
counts = {"dead_final", "first_dead_step", "steps"}
widths = [max(len(c), 8) for c in cols]
print("setting " + "".join(f"  {c:>{w}s}" for c, w in zip(cols, widths)))
for name in ["none", "aux", "bias"]:
    with open(os.path.join(out, name, "summary.csv"), newline="") as f:
        row = next(csv.DictReader(f))
    cells = []
    for c, w in zip(cols, widths):
        v = row.get(c, "")
        try:
            v = f"{int(float(v))}" if c in counts else f"{float(v):.3f}"
        except ValueError:
            v = v or "-"
        cells.append(f"  {v:>{w}s}")
    print(f"{name:8s}" + "".join(cells))
PY
