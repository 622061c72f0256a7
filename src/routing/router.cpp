#include "routing/router.h"

#include <algorithm>

#include "backend/routing_host.h"

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

void softmax_row(float* p, const float* z, int n) {
    host_softmax_rows(p, z, 1, n, n);  // the softmax_rows op's code
}

void softmax_backward_row(float* d, const float* p, int n) {
    host_softmax_rows_backward(d, p, 1, n, n);  // the softmax_rows_backward op's code
}

void softmax_probs(const float* logits, int T, RouterState& st) {
    const int N = st.N;
    std::copy_n(logits, size_t(T) * N, st.noisy.data());
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
    for (int t = 0; t < T; ++t)
        softmax_row(st.probs.data() + size_t(t) * N, logits + size_t(t) * N, N);
}

void gate_grad_to_slots(const RoutingPlan& plan, const float* d_gate, float* d_slot, size_t R) {
    // the gate_grad_to_slots op's code
    host_gate_grad_to_slots(d_slot, d_gate, plan.slot.data(), plan.A, int(R));
}

}  // namespace moe
