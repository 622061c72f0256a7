// Eigen's packet exp and log through cpu::blockwise (cpu_internal.h), and fixed-order lane sums.
#include "backend/vec_math.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/cpu_internal.h"

namespace moe {
namespace {
using cpu::blockwise;
constexpr size_t kBlock = cpu::kVecBlock;
}  // namespace

void vec_exp_shifted(float* y, const float* x, float shift, size_t n) {
    // Below the smallest normal float Eigen's packet exp differs by instruction set: its AVX2 path
    // clamps the argument and returns 2.9e-39 down to -inf, its AVX-512 path 0 or a subnormal.
    // Flushing those results to 0 makes the underflow the same on every build.
    blockwise(y, x, nullptr, n, [shift](auto& v, auto&) {
        v = (v - shift).exp();
        v = (v >= std::numeric_limits<float>::min()).select(v, 0.0f);
    });
}

void vec_xlogx(float* y, const float* p, size_t n) {
    // p ln p -> 0 as p -> 0: the smallest normal float stands in for 0 (giving 0 * finite = 0)
    blockwise(y, p, nullptr, n,
              [](auto& v, auto&) { v = v * v.max(std::numeric_limits<float>::min()).log(); });
}

namespace {
constexpr size_t kLanes = 16;

template <class Acc, class Term>
Acc lane_sum(size_t n, Term term) {
    Acc acc[kLanes] = {};
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (size_t j = 0; j < kLanes; ++j) acc[j] += term(i + j);
    for (size_t j = 0; i + j < n; ++j) acc[j] += term(i + j);
    // pairwise, a fixed tree
    for (size_t w = kLanes / 2; w > 0; w /= 2)
        for (size_t j = 0; j < w; ++j) acc[j] += acc[j + w];
    return acc[0];
}
}  // namespace

float vec_max(const float* x, size_t n) {
    // max is exact, so the lanes give the same value as a serial scan (NaN aside)
    float m[kLanes];
    std::fill(m, m + kLanes, x[0]);
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (size_t j = 0; j < kLanes; ++j) m[j] = m[j] > x[i + j] ? m[j] : x[i + j];
    for (; i < n; ++i) m[0] = m[0] > x[i] ? m[0] : x[i];
    return *std::max_element(m, m + kLanes);
}

float vec_sum(const float* x, size_t n) {
    return lane_sum<float>(n, [x](size_t i) { return x[i]; });
}

double vec_sum_double(const float* x, size_t n) {
    return lane_sum<double>(n, [x](size_t i) { return double(x[i]); });
}

float vec_dot(const float* x, const float* y, size_t n) {
    return lane_sum<float>(n, [x, y](size_t i) { return x[i] * y[i]; });
}

double vec_logsumexp(const float* x, size_t n) {
    double lse;
    vec_logsumexp_rows(&lse, x, 1, n);
    return lse;
}

void vec_logsumexp_rows(double* lse, const float* x, size_t rows, size_t n) {
    alignas(64) float e[kBlock];
    if (n > kBlock / 2) {
        for (size_t r = 0; r < rows; ++r) {
            const float* row = x + r * n;
            const float mx = vec_max(row, n);
            double sum = 0.0;
            for (size_t b = 0; b < n; b += kBlock) {
                const size_t len = std::min(kBlock, n - b);
                vec_exp_shifted(e, row + b, mx, len);
                sum += vec_sum_double(e, len);
            }
            lse[r] = mx + std::log(sum);
        }
        return;
    }
    // Short rows: the shifted values of kBlock / n rows side by side, one exp call for all.
    // x - max is rounded the same way here and in vec_exp_shifted, so the result is the same.
    const size_t per = kBlock / n;
    float mx[kBlock];
    for (size_t r0 = 0; r0 < rows; r0 += per) {
        const size_t m = std::min(per, rows - r0);
        for (size_t r = 0; r < m; ++r) {
            const float* row = x + (r0 + r) * n;
            mx[r] = vec_max(row, n);
            for (size_t i = 0; i < n; ++i) e[r * n + i] = row[i] - mx[r];
        }
        vec_exp_shifted(e, e, 0.0f, m * n);
        for (size_t r = 0; r < m; ++r) lse[r0 + r] = mx[r] + std::log(vec_sum_double(e + r * n, n));
    }
}

}  // namespace moe
