// Load balancing (METRICS.md "Auxiliary losses"). Each auxiliary loss returns its value before
// its coefficient and ACCUMULATES coef * (its gradient) into the gradient buffers it acts on:
//   d_probs (T,N)  gradient w.r.t. the router probabilities p (RouterState::probs)
//   d_slot  (T*K)  gradient w.r.t. the gate weights of the router's slots (RouterState::sel)
//   d_logits (T,L) gradient w.r.t. the (clean) router logits, L = the router's logit width
// Gradient buffers may be null to compute the value only (evaluation, statistics).
// Reductions run serially in token order: results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "routing/router.h"
#include "routing/routing_plan.h"

namespace moe {

// Switch (Fedus et al. 2021): N * sum_i f_i * Pbar_i, f_i = A_i / (T K) (constant),
// Pbar_i = mean_t p[t,i], A_i = plan.routed[i] (before capacity), K = router.k. Equals 1 at
// perfect balance. probs: (T, N). scratch is reused between calls (no allocation once grown).
double switch_loss(const RoutingPlan& plan, const float* probs, int K, float coef, float* d_probs,
                   std::vector<double>& scratch);
// The same with its own scratch (allocates: for one-off use and tests).
inline double switch_loss(const RoutingPlan& plan, const float* probs, int K, float coef,
                          float* d_probs) {
    std::vector<double> scratch;
    return switch_loss(plan, probs, K, coef, d_probs, scratch);
}

// Shazeer et al. 2017: CV(Importance)^2 + CV(Load)^2, Importance_i = sum_t G[t,i] (gates of the
// selected slots, kept or dropped: state.sel, state.sel_gate),
// Load_i = sum_t Phi((logit[t,i] - kth_excluding(noisy[t], K, i)) / std[t,i]), the smooth
// estimate of the tokens assigned under gating noise (state.noisy; std = state.noise_std, or with
// learned noise state.noise_stds[t,i] = softplus(noise logit[t,i])). With no noise (evaluation)
// the Load term uses the hard counts A_i (plan.routed) and has no gradient. CV^2 is
// var / mean^2 (population). Needs a token-choice router (state.K > 0). logits and d_logits are
// (T, state.logit_stride()); with learned noise the Load term's gradient also reaches the noise
// logits (columns N..2N-1): through std[t,i] and through the noisy competitor kth_excluding.
double shazeer_loss(const RoutingPlan& plan, const RouterState& state, const float* logits,
                    float coef, float* d_slot, float* d_logits, std::vector<double>& scratch);

// Router z-loss (Zoph et al. 2022): mean_t (log sum_i exp(logit[t,i]))^2.
double z_loss(const float* logits, int T, int N, float coef, float* d_logits);

// Auxiliary-loss-free balancing (Wang et al. 2024): b_i += rate * sign(mean_j A_j - A_i),
// with A counted over one step's batch (the plan's routed counts).
void bias_update(float* bias, const int* routed, int N, float rate);

}  // namespace moe
