#include <algorithm>
#include <cmath>

#include "routing/balancer.h"

namespace moe {

double z_loss(const float* logits, int T, int N, float coef, float* d_logits) {
    double total = 0.0;
    for (int t = 0; t < T; ++t) {
        const float* l = logits + size_t(t) * N;
        const float mx = *std::max_element(l, l + N);
        double sum = 0.0;
        for (int i = 0; i < N; ++i) sum += std::exp(double(l[i]) - mx);
        const double lse = mx + std::log(sum);
        total += lse * lse;
        if (d_logits) {
            // d/dl_i of coef * lse^2 / T = coef * 2 lse softmax_i / T
            const double c = coef * 2.0 * lse / T;
            for (int i = 0; i < N; ++i)
                d_logits[size_t(t) * N + i] += float(c * std::exp(double(l[i]) - lse));
        }
    }
    return total / T;
}

}  // namespace moe
