#include "backend/routing_host.h"
#include "routing/balancer.h"

namespace moe {

double switch_loss(const RoutingPlan& plan, const float* probs, int K, float coef, float* d_probs,
                   std::vector<double>& scratch) {
    const int T = plan.T, N = plan.N;
    // P̄_i = mean_t p[t,i]: walk the row-major (T, N) probabilities row by row; each column sum
    // still adds t = 0..T-1 in order.
    scratch.resize(size_t(N));
    double* pbar = scratch.data();
    host_column_sums(pbar, probs, T, N);  // the column_sums op's code
    const double loss = host_switch_loss_value(plan.routed.data(), pbar, T, N, K);
    if (d_probs) {
        // d/dp[t,i] of coef * N * sum_i f_i * mean_t p[t,i] = coef * N * f_i / T (the same for
        // every t): reuse pbar's storage for it.
        host_switch_loss_grad(d_probs, plan.routed.data(), T, N, K, coef, pbar);  // the op's code
    }
    return loss;
}

}  // namespace moe
