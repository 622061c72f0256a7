#!/usr/bin/env bash
# Three balancing settings on the quick start config (Zipf-skewed clusters), side by side:
#   none     balance.alpha=0, balance.bias_rate=0
#   aux      balance.alpha=0.01 (Switch auxiliary loss)
#   bias     balance.alpha=0, balance.bias_rate=0.001 (auxiliary-loss-free, Wang et al. 2024)
# and a small table from their summary.csv files. About 10 s on 2 cores.
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
import csv, sys, os
out = sys.argv[1]
cols = ["accuracy", "max_vio", "effective_experts", "drop_rate", "worst_max_vio", "dead_final", "first_dead_step"]
print(f"{'setting':8s} " + " ".join(f"{c:>17s}" for c in cols))
for name in ["none", "aux", "bias"]:
    row = next(csv.DictReader(open(os.path.join(out, name, "summary.csv"))))
    cells = []
    for c in cols:
        v = row[c]
        try:
            v = f"{float(v):.3f}"
        except ValueError:
            v = v or "-"
        cells.append(f"{v:>17s}")
    print(f"{name:8s} " + " ".join(cells))
PY
