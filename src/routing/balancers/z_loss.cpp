#include <algorithm>
#include <cmath>

#include "backend/vec_math.h"
#include "routing/balancer.h"

namespace moe {

double z_loss(const float* logits, int T, int N, float coef, float* d_logits) {
    constexpr int kBlock = 256;
    float e[kBlock];
    double total = 0.0;
    for (int t = 0; t < T; ++t) {
        const float* l = logits + size_t(t) * N;
        const double lse = vec_logsumexp(l, size_t(N));
        total += lse * lse;
        if (d_logits) {
            // d/dl_i of coef * lse^2 / T = coef * 2 lse softmax_i / T, softmax_i = exp(l_i - lse)
            const double c = coef * 2.0 * lse / T;
            const float shift = float(lse);
            float* d = d_logits + size_t(t) * N;
            for (int b = 0; b < N; b += kBlock) {
                const int len = std::min(kBlock, N - b);
                vec_exp_shifted(e, l + b, shift, size_t(len));
                for (int i = 0; i < len; ++i) d[b + i] += float(c * e[i]);
            }
        }
    }
    return total / T;
}

}  // namespace moe
