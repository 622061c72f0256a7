#include "routing/router.h"

#include <algorithm>

namespace moe {

void RouterState::reserve(int T_max, int N_, int K_, bool keep_scores) {
    N = N_;
    K = K_;
    const size_t TN = size_t(T_max) * size_t(N_);
    probs.resize(TN);
    noisy.resize(TN);
    scores.resize(keep_scores ? TN : 0);
    sel.resize(size_t(T_max) * size_t(K_));
    sel_gate.resize(size_t(T_max) * size_t(K_));
}

void gate_grad_to_slots(const RoutingPlan& plan, const float* d_gate, float* d_slot, size_t R) {
    std::fill_n(d_slot, R, 0.0f);
    for (int a = 0; a < plan.A; ++a) d_slot[plan.slot[size_t(a)]] = d_gate[a];
}

}  // namespace moe
