// The dense mixture of experts (Jacobs, Jordan, Nowlan & Hinton 1991, "Adaptive Mixtures of Local
// Experts"): every expert runs on every token and the gating network weighs their outputs,
//
//   p[t,i] = softmax_i(logit[t])          the gating network's probabilities
//   y[t]   = sum_i g[t,i] E_i(x[t]),  g[t,i] = scale * p[t,i]     (scale = router.scale, 1)
//
// This is the one router whose cost per token is O(N) experts by definition. It is written as a
// sparse plan of every pair: token t's i-th slot is t*N + i, routed to expert i with gate
// g[t,i], so the layer's ordinary dispatch, combine and backward run it; nothing is dropped (the
// validation refuses a capacity). Backward: the gate gradients go into p, then through the
// softmax: dz = p (dp - <dp, p>).
//
// Statistics: every expert is routed every token (A[i] = T), so the plan is `weighted` and the
// load of expert i is its dispatch weight mass sum_t p[t,i] (docs/metrics.md).
#include <algorithm>
#include <memory>

#include "backend/check.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

class SoftRouter final : public Router {
public:
    explicit SoftRouter(const RouterConfig& cfg) : scale_(float(cfg.scale)) {}

    size_t max_assignments(int T, int N, double) const override { return size_t(T) * size_t(N); }

    void reserve(RouterState& state, int T_max, int N, double) const override {
        state.reserve(T_max, N, N, false);  // K = N slots per token
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& /*pass*/,
               uint64_t /*seed*/, RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        MOESIM_CHECK(size_t(T) * N <= st.probs.size(), "more tokens than the state was sized for");
        st.T = T;
        st.R = T * N;
        st.noise_std = 0.0f;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* z = logits + size_t(t) * N;
            float* p = st.probs.data() + size_t(t) * N;
            std::copy_n(z, N, st.noisy.data() + size_t(t) * N);
            softmax_row(p, z, N);
            for (int i = 0; i < N; ++i) {
                st.sel[size_t(t) * N + i] = i;
                st.sel_gate[size_t(t) * N + i] = scale_ * p[i];
            }
        }
        plan_from_slots(plan, T, st.R, st.sel.data(), st.sel_gate.data(), nullptr, N);
        plan.weighted = true;
        std::fill(plan.mass.begin(), plan.mass.end(), 0.0);
        for (int t = 0; t < T; ++t)  // token order: a fixed summation order
            for (int i = 0; i < N; ++i) plan.mass[size_t(i)] += double(st.probs[size_t(t) * N + i]);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* p = st.probs.data() + size_t(t) * N;
            float* dl = d_logits + size_t(t) * N;
            for (int i = 0; i < N; ++i)
                dl[i] = scale_ * d_slot[size_t(t) * N + i] +
                        (d_probs ? d_probs[size_t(t) * N + i] : 0.0f);
            softmax_backward_row(dl, p, N);
        }
    }

private:
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_soft(const RouterConfig& cfg) {
    return std::make_unique<SoftRouter>(cfg);
}

}  // namespace moe
