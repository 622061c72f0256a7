// What this machine can do at most, measured on the spot (moe-sim bench --ceiling): the FP32 FMA
// peak with the widest vector unit this build targets, and the streaming memory bandwidth. Speed
// figures are quoted as a share of these, never as bare numbers from another machine
// (docs/performance.md).
#pragma once

#include <string>

namespace moe {

struct FmaPeak {
    double gflops_one = 0.0;  // one thread alone
    double gflops_all = 0.0;  // `threads` threads at once
    int threads = 0;
    int vector_bits = 0;  // 512 (AVX-512), 256 (AVX2 + FMA) or 32 (scalar fmaf)
};

// Independent FMA chains (enough to cover the FMA latency of two units) on vector registers, for
// about `seconds` per measurement, best of 3. threads <= 0: the OpenMP default.
FmaPeak probe_fma_peak(int threads, double seconds = 0.2);

// The STREAM triad a[i] = b[i] + s * c[i] over three arrays of `floats` each (default 3 x 128
// MiB, far beyond any last-level cache), best of 5, counted as STREAM does: 12 bytes per element
// (two reads, one write), best of 5 (more for small arrays). GB/s = 1e9 bytes per second.
// threads <= 0: the OpenMP default. Arrays that fit in the caches measure the caches' bandwidth:
// bench compares the optimizer with the triad over the optimizer's own working set.
double probe_stream_gbs(int threads, size_t floats = size_t{32} << 20);

// The CPU's model name from /proc/cpuinfo ("unknown" elsewhere).
std::string cpu_model_name();

}  // namespace moe
