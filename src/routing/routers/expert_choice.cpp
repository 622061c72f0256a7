// Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing",
// §3.1): the experts choose their tokens, not the tokens their experts.
//
//   p[t,i] = softmax_i(logit[t])                     scores: a softmax over the experts of each
//                                                    token, as in the paper's S = Softmax(X Wg)
//   C      = min(T, ceil(capacity.factor * T * k / N))   the paper's k = n c / e with the
//                                                    capacity factor c = factor * router.k
//   I[i]   = the C tokens of highest p[t,i]          (ties: the lower token index wins)
//   g[t,i] = scale * p[t,i] for t in I[i]            (scale = router.scale; default 1)
//
// A token gets 0..N experts; a token chosen by no expert is dropped (it passes through the
// residual only; the statistics count it in dropped_token_rate). Every expert processes exactly
// C assignments: routed[i] = C, A = N*C whatever the routing (not T*N), and the capacity pass of
// the layer, whose C is the same, drops nothing (dropped[i] = 0, drop_rate = 0). The Switch loss
// is then the constant N * C / (T k) (about capacity.factor) with no gradient through the
// softmax, the balancing bias never moves (every A[i] is equal), and the Shazeer loss, which
// needs k slots per token, is refused by a rule. A capacity factor of 0 in a pass means no limit:
// every expert takes every token (C = T).
//
// Slots are expert-major: expert i's r-th choice (descending p) is slot i*C + r, so each expert's
// segment of the plan lists its tokens best first and the plan's by-token index lists a token's
// experts in expert order. Backward: the gate gradients go into p (each (t, i) pair is at most one
// slot), then through the softmax; the selection is not differentiable.
#include <algorithm>
#include <memory>
#include <numeric>

#include "backend/check.h"
#include "backend/vec_math.h"
#include "routing/capacity.h"
#include "routing/router.h"

namespace moe {
namespace {

class ExpertChoiceRouter final : public Router {
public:
    explicit ExpertChoiceRouter(const RouterConfig& cfg) : k_(cfg.k), scale_(float(cfg.scale)) {}

    size_t max_assignments(int T, int N, double max_capacity_factor) const override {
        return size_t(N) * size_t(per_expert(max_capacity_factor, T, N));
    }

    void reserve(RouterState& state, int T_max, int N, double max_capacity_factor) const override {
        state.reserve(T_max, N, 0, false);
        const size_t R = max_assignments(T_max, N, max_capacity_factor);
        state.sel.resize(R);
        state.sel_gate.resize(R);
        state.sel_token.resize(R);
        state.work.resize(size_t(T_max) * N);
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& pass,
               uint64_t /*seed*/, RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        MOESIM_CHECK(size_t(T) * N <= st.probs.size(), "more tokens than the state was sized for");
        const int C = per_expert(pass.capacity_factor, T, N);
        MOESIM_CHECK(size_t(N) * C <= st.sel.size(),
                     "a capacity factor above the one the router state was sized for");
        st.T = T;
        st.R = N * C;
        st.noise_std = 0.0f;
        const bool par = size_t(T) * N > 16384;
#pragma omp parallel for schedule(static) if (par)
        for (int t = 0; t < T; ++t) {
            const float* z = logits + size_t(t) * N;
            float* p = st.probs.data() + size_t(t) * N;
            std::copy_n(z, N, st.noisy.data() + size_t(t) * N);
            softmax_row(p, z, N);
        }
        const float* probs = st.probs.data();
#pragma omp parallel for schedule(static) if (par)
        for (int i = 0; i < N; ++i) {
            int* order = st.work.data() + size_t(i) * T;
            std::iota(order, order + T, 0);
            std::partial_sort(order, order + C, order + T, [probs, N, i](int a, int b) {
                const float pa = probs[size_t(a) * N + i], pb = probs[size_t(b) * N + i];
                return pa > pb || (pa == pb && a < b);
            });
            for (int r = 0; r < C; ++r) {
                const size_t s = size_t(i) * C + r;
                const int t = order[r];
                st.sel[s] = i;
                st.sel_token[s] = t;
                st.sel_gate[s] = scale_ * probs[size_t(t) * N + i];
            }
        }
        plan_from_slots(plan, T, st.R, st.sel.data(), st.sel_gate.data(), st.sel_token.data(), 0);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N, R = st.R;
        const bool par = size_t(T) * N > 16384;
        for (size_t j = 0; j < size_t(T) * N; ++j) d_logits[j] = d_probs ? d_probs[j] : 0.0f;
        // dp[t,i] += scale * d_slot of the slot of (t, i): one slot at most per pair
        for (int s = 0; s < R; ++s)
            d_logits[size_t(st.sel_token[size_t(s)]) * N + st.sel[size_t(s)]] += scale_ * d_slot[s];
#pragma omp parallel for schedule(static) if (par)
        for (int t = 0; t < T; ++t) {
            const float* p = st.probs.data() + size_t(t) * N;
            float* dl = d_logits + size_t(t) * N;
            softmax_backward_row(dl, p, N);
        }
    }

private:
    // C of a pass: min(T, ceil(factor * T * k / N)); factor 0 = no limit (T).
    int per_expert(double factor, int T, int N) const {
        if (factor <= 0.0) return T;
        return int(std::min<int64_t>(T, capacity_of(factor, T, k_, N)));
    }

    int k_;
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_expert_choice(const RouterConfig& cfg) {
    return std::make_unique<ExpertChoiceRouter>(cfg);
}

}  // namespace moe
