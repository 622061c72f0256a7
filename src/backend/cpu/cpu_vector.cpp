// The CPU backend's passes over whole buffers: elementwise updates, reductions and the
// optimizer steps. Each is cut into pieces of kChunk elements (OpenMP across pieces).
#include <omp.h>

#include <algorithm>
#include <cmath>

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

double CpuBackend::sum_squares(const float* x, size_t n) {
    const size_t pieces = (n + kChunk - 1) / kChunk;
    partials_.assign(pieces, 0.0);
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 1)
    for (size_t p = 0; p < pieces; ++p) {
        // 16 independent accumulators (a fixed order): the loop vectorises
        double acc[16] = {0.0};
        const size_t end = std::min(n, (p + 1) * kChunk);
        size_t i = p * kChunk;
        for (; i + 16 <= end; i += 16)
            for (int j = 0; j < 16; ++j) acc[j] += double(x[i + j]) * x[i + j];
        for (; i < end; ++i) acc[0] += double(x[i]) * x[i];
        double s = 0.0;
        for (int j = 0; j < 16; ++j) s += acc[j];
        partials_[p] = s;
    }
    double total = 0.0;
    for (double s : partials_) total += s;
    return total;
}

bool CpuBackend::all_finite(const float* x, size_t n) {
    bool ok = true;
#pragma omp parallel for num_threads(threads_) schedule(static) reduction(&& : ok) if (threads_ > 1 && n > 65536)
    for (size_t i = 0; i < n; ++i) ok = ok && std::isfinite(x[i]);
    return ok;
}

void CpuBackend::adam_step(float* p, const float* g, float* m, float* v, size_t n, float lr,
                           float beta1, float beta2, float eps, float weight_decay, int64_t t) {
    const float ibc1 = 1.0f / (1.0f - float(std::pow(double(beta1), double(t))));
    const float ibc2 = 1.0f / (1.0f - float(std::pow(double(beta2), double(t))));
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && n > 65536)
    for (size_t i = 0; i < n; ++i) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        const float mh = m[i] * ibc1, vh = v[i] * ibc2;
        p[i] -= lr * (mh / (std::sqrt(vh) + eps) + weight_decay * p[i]);
    }
}

void CpuBackend::sgd_step(float* p, const float* g, float* v, size_t n, float lr, float momentum) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && n > 65536)
    for (size_t i = 0; i < n; ++i) {
        v[i] = momentum * v[i] + g[i];
        p[i] -= lr * v[i];
    }
}

}  // namespace moe::cpu
