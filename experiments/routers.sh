#!/usr/bin/env bash
# Every bundled preset (moe-sim presets: one per router and balancing scheme of the literature) on
# the same clustered data, balanced (data.clusters.imbalance=0) and Zipf-skewed (imbalance=1, the
# presets' own setting), and one table of the final evaluation: accuracy, max_vio, drop rate,
# dead experts and spec_nmi per preset, written to OUT/routers.csv and printed. Then
#   tools/plot/routers.py OUT/routers.csv -o routers.png
# draws it. About 1 CPU-minute per preset on 2 cores (600 steps each, twice).
#   experiments/routers.sh [OUT_DIR] [KEY=VALUE ...]      # overrides go to every run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MOESIM:-$root/build/release/moe-sim}
out=${1:-runs/routers}
shift || true
mkdir -p "$out"
# the preset names: the first word of each line of `moe-sim presets` up to its blank line
mapfile -t presets < <("$bin" presets | awk 'NF == 0 { exit } { print $1 }')
for name in "${presets[@]}"; do
  for data in balanced skewed; do
    imbalance=$([ "$data" = balanced ] && echo 0 || echo 1.0)
    dir="$out/$name/$data"
    if [ -f "$dir/summary.csv" ] && [ -z "${FORCE:-}" ]; then continue; fi
    echo "routers.sh: $name on $data data" >&2
    "$bin" run "presets/$name" data.clusters.imbalance=$imbalance "$@" --out "$dir" --force --quiet
  done
done
python3 - "$out" "${presets[@]}" <<'PY'
# routers.csv: one row per preset and data set; then the same as an aligned table on stdout.
import csv, os, sys
out, presets = sys.argv[1], sys.argv[2:]
cols = ["accuracy", "loss", "max_vio", "drop_rate", "dropped_token_rate", "dead_final", "effective_experts",
        "spec_nmi"]
rows = []
for name in presets:
    for data in ["balanced", "skewed"]:
        with open(os.path.join(out, name, data, "summary.csv"), newline="") as f:
            s = next(csv.DictReader(f))
        rows.append({"preset": name, "data": data, "router": s.get("router.type", ""),
                     "status": s.get("status", ""), **{c: s.get(c, "") for c in cols}})
with open(os.path.join(out, "routers.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
def cell(c, v):
    if v == "":
        return "-"
    return f"{int(float(v))}" if c == "dead_final" else f"{float(v):.3f}"
width = max(len(r["preset"]) for r in rows)
short = {"dropped_token_rate": "drop_tokens", "effective_experts": "eff_experts"}
heads = [short.get(c, c) for c in cols]
print(f"{'preset':{width}s}  {'data':8s}" + "".join(f"  {h:>11s}" for h in heads))
for r in rows:
    print(f"{r['preset']:{width}s}  {r['data']:8s}" + "".join(f"  {cell(c, r[c]):>11s}" for c in cols))
PY
