#include <algorithm>
#include <cmath>

#include "backend/vec_math.h"
#include "routing/balancer.h"

namespace moe {

double z_loss(const float* logits, int T, int N, float coef, float* d_logits) {
    constexpr int kRows = 64, kBlock = 256;
    double lse[kRows];
    float e[kBlock];
    double total = 0.0;
    for (int t0 = 0; t0 < T; t0 += kRows) {
        const int m = std::min(kRows, T - t0);
        vec_logsumexp_rows(lse, logits + size_t(t0) * N, size_t(m), size_t(N));
        for (int r = 0; r < m; ++r) {
            total += lse[r] * lse[r];
            if (!d_logits) continue;
            // d/dl_i of coef * lse^2 / T = coef * 2 lse softmax_i / T, softmax_i = exp(l_i - lse)
            const double c = coef * 2.0 * lse[r] / T;
            const float shift = float(lse[r]);
            const float* l = logits + size_t(t0 + r) * N;
            float* d = d_logits + size_t(t0 + r) * N;
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
