#!/usr/bin/env bash
# Runs the sweeps of experiments/*.yaml (README.md says what each shows) and prints a small table
# per sweep: the swept values and the mean of a few statistics over seeds.
#   experiments/run_sweeps.sh                  # all six, one after the other (about 10 CPU-minutes)
#   experiments/run_sweeps.sh alpha capacity   # some of them
# Environment: MOESIM (the binary; default build/release/moe-sim), JOBS (runs at once; default 2),
# OUT (the parent of the sweep directories; default sweeps). Re-running resumes: finished runs are
# skipped. Extra KEY=VALUE overrides go after `--`: experiments/run_sweeps.sh alpha -- train.steps=100
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MOESIM:-$root/build/release/moe-sim}
jobs=${JOBS:-2}
out=${OUT:-sweeps}
names=()
while [[ $# -gt 0 && $1 != -- ]]; do names+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
[[ ${#names[@]} -gt 0 ]] || names=(experts topk capacity alpha bias_rate alpha_vs_bias)

status=0
for name in "${names[@]}"; do
  config=$root/experiments/$name.yaml
  [[ -f $config ]] || { echo "run_sweeps.sh: no experiment '$name' (experiments/$name.yaml)" >&2; exit 2; }
  echo "== $name: $(sed -n '1s/^# //p' "$config")"
  "$bin" sweep "$config" "$@" --jobs "$jobs" --out "$out/exp_$name" || status=$?
  [[ $status == 130 ]] && exit 130
  if command -v python3 > /dev/null; then
    python3 - "$out/exp_$name/summary.csv" <<'PY'
import csv, sys
from collections import OrderedDict
rows = list(csv.DictReader(open(sys.argv[1])))
if not rows:
    sys.exit(0)
stats = ["loss", "accuracy", "max_vio", "effective_experts", "drop_rate", "dead_final"]
header = list(rows[0].keys())
swept = header[1:header.index("name")] if "name" in header else header[1:2]
swept = [k for k in swept if k != "seed"]
groups = OrderedDict()
for r in rows:
    if r.get("status") == "completed":
        groups.setdefault(tuple(r[k] for k in swept), []).append(r)
print("  ".join(f"{k:>17s}" for k in swept + stats) + "  seeds")
for key, rs in groups.items():
    mean = lambda s: sum(float(r[s]) for r in rs if r[s] != "") / max(1, sum(r[s] != "" for r in rs))
    print("  ".join([f"{v:>17s}" for v in key] + [f"{mean(s):17.4f}" for s in stats]) + f"  {len(rs):5d}")
PY
  fi
done
exit $status
