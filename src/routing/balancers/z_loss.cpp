#include <algorithm>
#include <cmath>

#include "backend/vec_math.h"
#include "routing/balancer.h"

namespace moe {

// lse[t] = max + log sum_i exp(l[t,i] - max), the exponentials vectorised a block at a time, their
// sum in double in a fixed order.
double z_loss(const float* logits, int T, int N, float coef, float* d_logits) {
    constexpr int kBlock = 256;
    float e[kBlock];
    double total = 0.0;
    for (int t = 0; t < T; ++t) {
        const float* l = logits + size_t(t) * N;
        const float mx = vec_max(l, size_t(N));
        double sum = 0.0;
        for (int b = 0; b < N; b += kBlock) {
            const int len = std::min(kBlock, N - b);
            vec_exp_shifted(e, l + b, mx, size_t(len));
            sum += vec_sum_double(e, size_t(len));
        }
        const double lse = mx + std::log(sum);
        total += lse * lse;
        if (d_logits) {
            // d/dl_i of coef * lse^2 / T = coef * 2 lse softmax_i / T, softmax_i = e_i / sum
            const double c = coef * 2.0 * lse / T / sum;
            float* d = d_logits + size_t(t) * N;
            for (int b = 0; b < N; b += kBlock) {
                const int len = std::min(kBlock, N - b);
                vec_exp_shifted(e, l + b, mx, size_t(len));
                for (int i = 0; i < len; ++i) d[b + i] += float(c * e[i]);
            }
        }
    }
    return total / T;
}

}  // namespace moe
