#include "backend/check.h"
#include "routing/balancer.h"

namespace moe {

double sequence_loss(const RoutingPlan& plan, const RouterState& state, const float* probs,
                     const int64_t* sequence, float coef, float* d_probs,
                     std::vector<double>& scratch) {
    const int T = plan.T, N = plan.N, K = state.K;
    MOESIM_CHECK(K > 0, "the sequence loss needs a token-choice router (k slots per token)");
    MOESIM_CHECK(sequence != nullptr, "the sequence loss needs each token's sequence");
    // The router's routed choices: with GShard's random second expert the skipped ones are -1.
    const int* chosen =
        state.emitted.size() >= size_t(T) * K ? state.emitted.data() : state.sel.data();
    int runs = 0;
    for (int t = 0; t < T; ++t) runs += t == 0 || sequence[t] != sequence[t - 1];
    if (runs == 0) return 0.0;
    scratch.assign(size_t(2) * N, 0.0);
    double* count = scratch.data();
    double* pbar = count + N;
    double total = 0.0;
    for (int a = 0; a < T;) {
        int b = a + 1;
        while (b < T && sequence[b] == sequence[a]) ++b;
        const double Tq = b - a;
        std::fill(scratch.begin(), scratch.end(), 0.0);
        for (int t = a; t < b; ++t) {
            const float* pr = probs + size_t(t) * N;
            for (int i = 0; i < N; ++i) pbar[i] += pr[i];
            for (int j = 0; j < K; ++j) {
                const int e = chosen[size_t(t) * K + j];
                if (e >= 0) count[e] += 1.0;
            }
        }
        double lq = 0.0;
        for (int i = 0; i < N; ++i) lq += count[i] / (Tq * K) * (pbar[i] / Tq);
        total += N * lq;
        if (d_probs) {
            // d/dp[t,i] of coef * mean_q N sum_i f_i^q Pbar_i^q = coef * N f_i^q / (T_q runs)
            for (int i = 0; i < N; ++i)
                pbar[i] = double(float(coef * N * (count[i] / (Tq * K)) / Tq / runs));
            for (int t = a; t < b; ++t) {
                float* dr = d_probs + size_t(t) * N;
                for (int i = 0; i < N; ++i) dr[i] += float(pbar[i]);
            }
        }
        a = b;
    }
    return total / runs;
}

}  // namespace moe
