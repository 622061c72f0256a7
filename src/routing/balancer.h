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

// GShard (Lepikhin et al. 2020, Algorithm 1): the switch form with f_i counting each token's
// FIRST choice only: N * sum_i f1_i * Pbar_i, f1_i = #{t : sel[t*K] = i} / T (before capacity,
// not differentiable), Pbar_i = mean_t p[t,i]. GShard writes mean_i(f1_i * Pbar_i); times N^2 it
// is this, 1 at perfect balance like switch, and equal to switch for K = 1. Needs a token-choice
// router (state.K > 0: sel holds each token's choices best first). scratch as switch_loss.
double gshard_loss(const RoutingPlan& plan, const RouterState& state, const float* probs,
                   float coef, float* d_probs, std::vector<double>& scratch);

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

// DeepSeek-V2/V3's sequence-wise balance loss: the switch form within each sequence, averaged
// over the sequences of the batch: mean_q N * sum_i f_i^q * Pbar_i^q, f_i^q = the assignments
// routed to i (before capacity; GShard's skipped second experts do not count) among the T_q K of
// sequence q's tokens, Pbar_i^q = mean over those tokens of p[t,i]. sequence (T): each token's
// sequence; a sequence is a maximal run of equal ids (the tokens of one sequence are adjacent,
// and one cut by the batch boundary counts with the part in the batch). The gradient goes
// through p only. Needs a token-choice router (state.K > 0). scratch: 2N doubles.
double sequence_loss(const RoutingPlan& plan, const RouterState& state, const float* probs,
                     const int64_t* sequence, float coef, float* d_probs,
                     std::vector<double>& scratch);

// Router z-loss (Zoph et al. 2022): mean_t (log sum_i exp(logit[t,i]))^2.
double z_loss(const float* logits, int T, int N, float coef, float* d_logits);

// Every auxiliary balancing loss a config asks for: balance.loss with coefficient balance.alpha,
// then each balance.losses.<name> > 0 with its own coefficient (switch, gshard, shazeer, in that
// order). Each accumulates its coefficient times its gradient into the buffers (null: values
// only), exactly as the single losses above. The z-loss is apart (z_loss).
struct AuxLossValues {
    double main = 0.0;      // balance.loss before balance.alpha (0 with none)
    double weighted = 0.0;  // alpha * main + sum of coefficient * value of balance.losses
};
AuxLossValues balance_losses(const BalanceConfig& cfg, const RoutingPlan& plan,
                             const RouterState& state, const float* logits, int K, float* d_probs,
                             float* d_slot, float* d_logits, std::vector<double>& scratch,
                             const int64_t* sequence = nullptr);

// Auxiliary-loss-free balancing (Wang et al. 2024), with A counted over one step's batch (the
// plan's routed counts) and m = mean_j A_j:
//   sign          b_i += rate * sign(m - A_i)                         (Wang et al. 2024)
//   proportional  b_i += rate * (m - A_i) / m       (nothing when m = 0; the violation itself,
//                                                    the dual step of Han & Zhong 2025's
//                                                    primal-dual reading, normalised by m)
//   mean_centred  the sign step, then b_i -= mean_j b_j                (sum_i b_i = 0 after it)
void bias_update(float* bias, const int* routed, int N, float rate, BiasRule rule = BiasRule::sign);

// The bias rate of training step s (1-based) of a run of `steps` steps: balance.bias_rate times
// the warmup min(1, s / bias_warmup) (none when bias_warmup = 0), times, after the warmup, the
// decay: constant 1, or cosine 0.5 (1 + cos(pi (s - W) / (steps - W))) from 1 to 0 at the last
// step (W = bias_warmup), the learning-rate schedule's shape (train.schedule).
double bias_rate_at(const BalanceConfig& cfg, int64_t steps, int64_t s);

}  // namespace moe
