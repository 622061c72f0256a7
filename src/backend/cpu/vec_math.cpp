// Eigen's packet exp and log over 64-byte-aligned, zero-padded blocks: Eigen computes packets and
// scalar tails with different approximations, and would peel unaligned heads with the scalar one;
// going through a block of whole packets makes every value take the packet path.
#include "backend/vec_math.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

namespace moe {
namespace {
constexpr size_t kBlock = 256;
using Block = Eigen::Map<Eigen::Array<float, kBlock, 1>, Eigen::Aligned64>;

// y = f(x), kBlock values at a time: copied into an aligned, zero-padded block, f applied to the
// whole block as packets, the results copied out.
template <class F>
void blockwise(float* y, const float* x, size_t n, F f) {
    alignas(64) float buf[kBlock];
    for (size_t b = 0; b < n; b += kBlock) {
        const size_t len = std::min(kBlock, n - b);
        std::copy_n(x + b, len, buf);
        std::fill(buf + len, buf + kBlock, 0.0f);
        Block v(buf);
        f(v);
        std::copy_n(buf, len, y + b);
    }
}
}  // namespace

void vec_exp_shifted(float* y, const float* x, float shift, size_t n) {
    blockwise(y, x, n, [shift](Block& v) { v = (v - shift).exp(); });
}

void vec_xlogx(float* y, const float* p, size_t n) {
    // p ln p -> 0 as p -> 0: the smallest normal float stands in for 0 (giving 0 * finite = 0)
    blockwise(y, p, n, [](Block& v) {
        v = v * v.max(std::numeric_limits<float>::min()).log();
    });
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
    const float mx = vec_max(x, n);
    alignas(64) float e[kBlock];
    double sum = 0.0;
    for (size_t b = 0; b < n; b += kBlock) {
        const size_t len = std::min(kBlock, n - b);
        vec_exp_shifted(e, x + b, mx, len);
        sum += vec_sum_double(e, len);
    }
    return mx + std::log(sum);
}

}  // namespace moe
