#!/usr/bin/env bash
# CPU thread scaling of the training step: `moe-sim bench` of each config at 1, 2, 4, ... threads
# (up to the CPUs this process may use), printed as a Markdown table of median ms per step and
# speedup over 1 thread, with the CPU named.
#
#   experiments/thread_scaling.sh [CONFIG_NAME ...]     (default: small medium n512)
#
# Environment: MOESIM (default build/release/moe-sim), STEPS (timed steps, default 10),
# WARMUP (default 2). OMP_WAIT_POLICY passes through (see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MOESIM:-build/release/moe-sim}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=(small medium n512)
ncpu=$(nproc)
threads=()
for t in 1 2 4 8 16 32 64; do ((t <= ncpu)) && threads+=("$t"); done

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $ncpu CPUs; $STEPS timed steps after $WARMUP, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-(unset)}"
echo
header="| config |"
rule="| --- |"
for t in "${threads[@]}"; do
    header+=" $t thr ms (speedup) |"
    rule+=" ---: |"
done
echo "$header"
echo "$rule"
for c in "${configs[@]}"; do
    line="| $c |"
    base=""
    for t in "${threads[@]}"; do
        ms=$("$BIN" bench "configs/bench/$c.yaml" --csv --threads "$t" --steps "$STEPS" \
            --warmup "$WARMUP" | tail -n 1 | cut -d, -f7)
        [[ -n $base ]] || base=$ms
        line+=" $ms ($(awk -v b="$base" -v m="$ms" 'BEGIN { printf "%.2fx", b / m }')) |"
    done
    echo "$line"
done
