#include "backend/machine_probe.h"

#include <omp.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;

// kChains independent accumulators: with an FMA latency of 4 cycles and two FMA units, 8 chains
// keep both units busy; 10 leave a margin and still fit the 16 vector registers of AVX2 beside the
// two constants.
constexpr int kChains = 10;

#if defined(__AVX512F__)
constexpr int kBits = 512;
float fma_chains(long iters) {
    __m512 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(float(j) * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    __m512 s = acc[0];
    for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kBits = 256;
float fma_chains(long iters) {
    __m256 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(float(j) * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    __m256 s = acc[0];
    for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    float r = 0.0f;
    for (float v : out) r += v;
    return r;
}
#else
constexpr int kBits = 32;
float fma_chains(long iters) {
    float acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = float(j) * 1e-3f;
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < kChains; ++j) acc[j] = std::fma(acc[j], 0.9999999f, 1e-7f);
    float r = 0.0f;
    for (float v : acc) r += v;
    return r;
}
#endif

constexpr double kFlopsPerIter = 2.0 * kChains * (kBits / 32);
volatile float g_sink = 0.0f;  // keeps the chains' results alive

// GFLOP/s of `threads` threads running `iters` iterations each at once (wall time).
double fma_gflops(int threads, long iters) {
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
    {
        const float r = fma_chains(iters);
#pragma omp critical
        g_sink = g_sink + r;
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    return kFlopsPerIter * double(iters) * threads / s * 1e-9;
}

double best_fma_gflops(int threads, double seconds) {
    // calibrate the iteration count to about `seconds` on one thread, then best of 3
    long iters = 1 << 16;
    for (;;) {
        const auto t0 = Clock::now();
        g_sink = g_sink + fma_chains(iters);
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        if (s > 0.02 || iters > (1L << 40)) {
            iters = std::max(1L, long(double(iters) * seconds / std::max(s, 1e-9)));
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int r = 0; r < 3; ++r) best = std::max(best, fma_gflops(threads, iters));
    return best;
}

}  // namespace

FmaPeak probe_fma_peak(int threads, double seconds) {
    FmaPeak p;
    p.threads = threads > 0 ? threads : omp_get_max_threads();
    p.vector_bits = kBits;
    p.gflops_one = best_fma_gflops(1, seconds);
    p.gflops_all = p.threads == 1 ? p.gflops_one : best_fma_gflops(p.threads, seconds);
    return p;
}

double probe_stream_gbs(int threads, size_t floats) {
    const int nt = threads > 0 ? threads : omp_get_max_threads();
    std::unique_ptr<float[]> a(new float[floats]), b(new float[floats]), c(new float[floats]);
    const long n = long(floats);
    // first touch by the threads that will stream them (NUMA placement)
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long i = 0; i < n; ++i) {
        a[size_t(i)] = 0.0f;
        b[size_t(i)] = 1.0f;
        c[size_t(i)] = 2.0f;
    }
    const float s = 0.5f;
    double best = 0.0;
    // small arrays: more repetitions, so that each measurement is not a single short loop
    const int reps =
        int(std::clamp<size_t>((size_t{1} << 27) / std::max<size_t>(floats, 1), 5, 200));
    for (int r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
#pragma omp parallel for num_threads(nt) schedule(static)
        for (long i = 0; i < n; ++i) a[size_t(i)] = b[size_t(i)] + s * c[size_t(i)];
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        best = std::max(best, 12.0 * double(floats) / sec * 1e-9);
    }
    g_sink = g_sink + a[floats / 2];
    return best;
}

std::string cpu_model_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("model name", 0) != 0) continue;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) break;
        size_t start = line.find_first_not_of(" \t", colon + 1);
        return start == std::string::npos ? "unknown" : line.substr(start);
    }
    return "unknown";
}

}  // namespace moe
