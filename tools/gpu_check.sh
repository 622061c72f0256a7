#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with an NVIDIA GPU where time is short:
#
#   tools/gpu_check.sh [BUILD_DIR] [REPORT]
#
# BUILD_DIR (default build/release) holds moe-sim, its CUDA module libmoesim_cuda.so and
# tests/moesim_tests, built with the CUDA parts (for sm_80 and sm_90), here or on another
# machine: the tests find the source tree and the binary through MOESIM_TEST_SOURCE_DIR /
# MOESIM_TEST_BINARY, and the module through MOESIM_CUDA_MODULE, set below. Shared libraries
# the GPU machine lacks (yaml-cpp, fmt) can be put on LD_LIBRARY_PATH by the caller.
#
# Steps, each with its own time limit, so one hang cannot eat the whole slot:
#   1. the GPU and the driver (nvidia-smi);
#   2. the CUDA tests with MOESIM_REQUIRE_GPU=1, where a skip is a failure: every backend op
#      against its CPU twin and against itself (twin*), the whole model's step and training
#      against the CPU, two CUDA runs byte-identical (cuda*);
#   3. the same twin tests under compute-sanitizer's memcheck, where it is installed;
#   4. bench of every configs/bench config on the CPU (all cores) and on CUDA;
# and writes REPORT (default gpu_report.md): the outcome of each step and the bench table.
# Exit status: 0 when every test step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
REPORT=${2:-gpu_report.md}
BIN="$BUILD/moe-sim"
TESTS="$BUILD/tests/moesim_tests"
for f in "$BIN" "$TESTS" "$BUILD/libmoesim_cuda.so"; do
    [[ -x $f ]] || { echo "gpu_check: $f not found: build first (cmake --preset release)" >&2; exit 2; }
done
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do
    [[ -d $d ]] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
export MOESIM_REQUIRE_GPU=1 MOESIM_TEST_SOURCE_DIR="$PWD" MOESIM_TEST_BINARY="$PWD/$BIN"
# the CUDA module beside moe-sim, for the test binary too (it runs from BUILD/tests)
export MOESIM_CUDA_MODULE="$PWD/$BUILD/libmoesim_cuda.so"
export MOESIM_TEST_TMP="${TMPDIR:-/tmp}/moesim_gpu_check"
mkdir -p "$MOESIM_TEST_TMP"
status=0
{
    echo "# moe-sim CUDA checks"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- moe-sim: $("$BIN" --version 2>&1)"
    echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    echo
} > "$REPORT"

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$MOESIM_TEST_TMP/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$MOESIM_TEST_TMP/$name.log"
    echo "- $name: exit $rc in $((SECONDS - t0)) s" >> "$REPORT"
    grep -E "MESSAGE|largest|eval loss|relative difference" "$MOESIM_TEST_TMP/$name.log" \
        | sed 's/^/    /' | head -n 20 >> "$REPORT"
    return $rc
}

step tests 300 "$TESTS" -tc='twin*,cuda*' -s --no-version || status=1
if command -v compute-sanitizer > /dev/null; then
    step memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$TESTS" -tc='twin cuda*' || status=1
else
    echo "- memcheck: compute-sanitizer not installed, not run" >> "$REPORT"
fi

{
    echo
    echo "## bench (median ms per step; 20 timed steps after 3 warm-up)"
    echo
    echo "| config | cpu ms ($(nproc) threads) | cuda ms | cuda speedup | cpu GFLOP/s | cuda GFLOP/s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
} >> "$REPORT"
for cfg in configs/bench/*.yaml; do
    name=$(basename "$cfg" .yaml)
    cpu=$(timeout 120 "$BIN" bench "$cfg" --csv --threads 0 device=cpu 2>&1 | tail -n 1)
    gpu=$(timeout 120 "$BIN" bench "$cfg" --csv device=cuda 2>&1 | tail -n 1)
    echo "$name cpu: $cpu"
    echo "$name cuda: $gpu"
    python3 - "$name" "$cpu" "$gpu" >> "$REPORT" << 'PY'
import sys
name, cpu, gpu = sys.argv[1:4]
def cell(row, i):
    try: return float(row.split(",")[i])
    except (ValueError, IndexError): return None
c, g, cf, gf = cell(cpu, 6), cell(gpu, 6), cell(cpu, 11), cell(gpu, 11)
if c is None or g is None:
    print(f"| {name} | {cpu[:60]} | {gpu[:60]} | | | |")
else:
    print(f"| {name} | {c:.3f} | {g:.3f} | {c / g:.2f}x | {cf:.1f} | {gf:.1f} |")
PY
done
echo
cat "$REPORT"
exit $status
