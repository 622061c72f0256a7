#include "backend/check.h"
#include "routing/balancer.h"

namespace moe {

double gshard_loss(const RoutingPlan& plan, const RouterState& state, const float* probs,
                   float coef, float* d_probs, std::vector<double>& scratch) {
    const int T = plan.T, N = plan.N, K = state.K;
    MOESIM_CHECK(K > 0, "the gshard loss needs a token-choice router (k slots per token)");
    scratch.assign(size_t(2) * N, 0.0);
    double* pbar = scratch.data();
    double* first = pbar + N;  // tokens whose first choice is i
    for (int t = 0; t < T; ++t) {
        const float* pr = probs + size_t(t) * N;
        for (int i = 0; i < N; ++i) pbar[i] += pr[i];
        first[state.sel[size_t(t) * K]] += 1.0;
    }
    double loss = 0.0;
    for (int i = 0; i < N; ++i) loss += first[i] / T * (pbar[i] / T);
    if (d_probs) {
        // d/dp[t,i] of coef * N * sum_i f1_i * mean_t p[t,i] = coef * N * f1_i / T for every t
        for (int i = 0; i < N; ++i) pbar[i] = double(float(coef * N * (first[i] / T) / T));
        for (int t = 0; t < T; ++t) {
            float* dr = d_probs + size_t(t) * N;
            for (int i = 0; i < N; ++i) dr[i] += float(pbar[i]);
        }
    }
    return N * loss;
}

}  // namespace moe
