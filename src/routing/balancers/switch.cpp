#include "routing/balancer.h"

namespace moe {

double switch_loss(const RoutingPlan& plan, float coef, float* d_probs) {
    const int T = plan.T, N = plan.N, K = plan.K;
    double loss = 0.0;
    for (int i = 0; i < N; ++i) {
        double pbar = 0.0;
        for (int t = 0; t < T; ++t) pbar += plan.probs[size_t(t) * N + i];
        pbar /= T;
        const double f = double(plan.routed[i]) / (double(T) * K);
        loss += f * pbar;
    }
    if (d_probs) {
        // d/dp[t,i] of coef * N * sum_i f_i * mean_t p[t,i] = coef * N * f_i / T
        for (int i = 0; i < N; ++i) {
            const float g = float(coef * N * (double(plan.routed[i]) / (double(T) * K)) / T);
            for (int t = 0; t < T; ++t) d_probs[size_t(t) * N + i] += g;
        }
    }
    return N * loss;
}

}  // namespace moe
