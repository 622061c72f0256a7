#!/usr/bin/env bash
# Makes the figures of docs/plotting.md (docs/figures/*.png) from short runs of configs/quickstart.yaml,
# and the token-task figure of README.md from a run of configs/markov_transformer.yaml.
#   tools/plot/docs_figures.sh [SCRATCH_DIR]     # default: /tmp/moe-sim-docs-figures; about 8 CPU-minutes
# The sweep is a shell loop of `moe-sim run` into SCRATCH/alpha/<run>/: sweep.py gathers their
# summary.csv rows itself (a `moe-sim sweep` directory works the same).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${MOESIM_BINARY:-build/release/moe-sim}
scratch=${1:-/tmp/moe-sim-docs-figures}
py=${PYTHON:-python3}
mkdir -p "$scratch" docs/figures
run() { local out=$1; shift; [ -f "$out/summary.csv" ] || "$bin" run configs/quickstart.yaml "$@" --out "$out" --force --quiet; }

# 1. one run: the dashboard
run "$scratch/quickstart"
"$py" tools/plot/run.py "$scratch/quickstart" --size 1400x900 --compact -o docs/figures/quickstart_dashboard.png

# 2. aux loss alpha=0 vs alpha=0.01 (the quickstart) vs auxiliary-loss-free bias balancing
run "$scratch/alpha0" balance.alpha=0
run "$scratch/bias" balance.alpha=0 balance.bias_rate=0.001
"$py" tools/plot/compare.py "$scratch/alpha0" "$scratch/quickstart" "$scratch/bias" \
  --y max_vio,task_loss --smooth 5 --size 900x700 --compact -o docs/figures/compare_balancing.png

# 3. a sweep of balance.alpha over 2 seeds, 300 steps each
for alpha in 0 0.001 0.01 0.1; do
  for seed in 1 2; do
    run "$scratch/alpha/alpha=${alpha}_seed=${seed}" balance.alpha=$alpha seed=$seed train.steps=300
  done
done
"$py" tools/plot/sweep.py "$scratch/alpha" --x balance.alpha --y max_vio,accuracy --size 800x700 --compact \
  -o docs/figures/sweep_alpha.png
# 4. a token task: loss against the ideal loss, experts by domain and by token
[ -f "$scratch/markov_transformer/summary.csv" ] ||
  "$bin" run configs/markov_transformer.yaml --out "$scratch/markov_transformer" --force --quiet
"$py" tools/plot/tokens.py "$scratch/markov_transformer" --compact -o docs/figures/markov_tokens.png
ls -l docs/figures/
