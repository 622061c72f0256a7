#!/usr/bin/env bash
# A moe-sim sweep through GNU parallel (or any tool that runs one shell command per line):
# `moe-sim sweep --list` prints the exact `moe-sim run` command of every run still to do, and
# `--collect` gathers their summary rows afterwards.
#   experiments/sweep_parallel.sh experiments/topk.yaml [KEY=V1,V2 ...]
# Environment: MOESIM (the binary), JOBS (runs at once, default 2), OUT (default sweeps/parallel).
# --jobs is given to --list too, so that each listed run gets its share of the cores (--threads).
# Tested here with the xargs -P fallback only (GNU parallel was not installed): the commands are
# plain POSIX shell lines, one per run, which is all parallel needs.
set -euo pipefail
bin=${MOESIM:-build/release/moe-sim}
jobs=${JOBS:-2}
out=${OUT:-sweeps/parallel}
commands=$(mktemp)
trap 'rm -f "$commands"' EXIT
"$bin" sweep "$@" --out "$out" --jobs "$jobs" --list > "$commands" || exit $?
if command -v parallel > /dev/null; then
  parallel --jobs "$jobs" --halt never < "$commands" || true
else
  echo "sweep_parallel.sh: GNU parallel not found; using xargs -P $jobs" >&2
  tr '\n' '\0' < "$commands" | xargs -0 -P "$jobs" -I{} sh -c '{}' || true
fi
"$bin" sweep "$@" --out "$out" --collect
