// The CPU backend's passes over whole buffers: elementwise updates, reductions and the
// optimizer steps. Each is cut into pieces of kChunk elements (OpenMP across pieces).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_internal.h"

namespace moe::cpu {

void CpuBackend::add(float* y, const float* x, size_t n) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && n > 65536)
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuBackend::scale(float* x, size_t n, float s) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && n > 65536)
    for (size_t i = 0; i < n; ++i) x[i] *= s;
}

namespace {

// Sum of squares of x[0..n) in a fixed order that vectorises: 16 float lanes over blocks of
// 256 values (16 terms per lane, so float is exact to ~1e-6 relative), each block's lanes then
// added into 16 double accumulators.
double sumsq_piece(const float* x, size_t n) {
    constexpr size_t kLanes = 16, kBlock = 256;
    double acc[kLanes] = {};
    size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        float f[kLanes] = {};
        for (size_t b = 0; b < kBlock; b += kLanes)
            for (size_t j = 0; j < kLanes; ++j) f[j] += x[i + b + j] * x[i + b + j];
        for (size_t j = 0; j < kLanes; ++j) acc[j] += f[j];
    }
    for (; i < n; ++i) acc[i % kLanes] += double(x[i]) * x[i];
    double s = 0.0;
    for (size_t j = 0; j < kLanes; ++j) s += acc[j];
    return s;
}

size_t pieces_of(size_t n) {
    return (n + kChunk - 1) / kChunk;
}

double sum_in_order(const std::vector<double>& partials) {
    double total = 0.0;
    for (double s : partials) total += s;
    return total;
}

}  // namespace

// Pieces of kChunk in parallel, their partial sums added in piece order.
double CpuBackend::sum_squares(const float* x, size_t n) {
    const size_t pieces = pieces_of(n);
    partials_.assign(pieces, 0.0);
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 1)
    for (size_t p = 0; p < pieces; ++p)
        partials_[p] = sumsq_piece(x + p * kChunk, std::min(n, (p + 1) * kChunk) - p * kChunk);
    return sum_in_order(partials_);
}

namespace {

// The optimizer steps work piece by piece: a piece's 4 x 64 KiB of p, g, m and v stay in cache
// between the gradient's sum of squares and the update, so memory is streamed once. update(i0,
// len) updates one piece and zeroes its gradients in the same loop (a separate pass measured 7%
// slower); grad_sumsq (if not null) receives their sum of squares on entry, as sum_squares()
// adds it.
template <class Update>
void optimizer_pass(float* g, size_t n, double* grad_sumsq, int threads,
                    std::vector<double>& partials, Update update) {
    const size_t pieces = pieces_of(n);
    if (grad_sumsq) partials.assign(pieces, 0.0);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && pieces > 1)
    for (size_t q = 0; q < pieces; ++q) {
        const size_t i0 = q * kChunk, len = std::min(n, i0 + kChunk) - i0;
        if (grad_sumsq) partials[q] = sumsq_piece(g + i0, len);
        update(i0, len);
    }
    if (grad_sumsq) *grad_sumsq = sum_in_order(partials);
}

}  // namespace

void CpuBackend::adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamHyper& h,
                           float grad_scale, double* grad_sumsq) {
    const float b1 = h.beta1, b2 = h.beta2, lr = h.lr, eps = h.eps, wd = h.weight_decay;
    const float ibc1 = 1.0f / (1.0f - float(std::pow(double(b1), double(h.t))));
    const float ibc2 = 1.0f / (1.0f - float(std::pow(double(b2), double(h.t))));
    optimizer_pass(g, n, grad_sumsq, threads_, partials_, [=](size_t i0, size_t len) {
        float *pp = p + i0, *gp = g + i0, *mp = m + i0, *vp = v + i0;
        for (size_t i = 0; i < len; ++i) {
            const float gi = gp[i] * grad_scale;
            mp[i] = b1 * mp[i] + (1.0f - b1) * gi;
            vp[i] = b2 * vp[i] + (1.0f - b2) * gi * gi;
            const float mh = mp[i] * ibc1, vh = vp[i] * ibc2;
            pp[i] -= lr * (mh / (std::sqrt(vh) + eps) + wd * pp[i]);
            gp[i] = 0.0f;
        }
    });
}

void CpuBackend::sgd_step(float* p, float* g, float* v, size_t n, float lr, float momentum,
                          float grad_scale, double* grad_sumsq) {
    optimizer_pass(g, n, grad_sumsq, threads_, partials_, [=](size_t i0, size_t len) {
        float *pp = p + i0, *gp = g + i0, *vp = v + i0;
        for (size_t i = 0; i < len; ++i) {
            vp[i] = momentum * vp[i] + gp[i] * grad_scale;
            pp[i] -= lr * vp[i];
            gp[i] = 0.0f;
        }
    });
}

}  // namespace moe::cpu
