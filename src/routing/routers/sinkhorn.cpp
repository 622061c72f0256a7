// Sinkhorn routing (Clark et al. 2022, "Unified Scaling Laws for Routed Language Models", S-BASE:
// BASE's balanced assignment approximated by Sinkhorn iterations).
//
// Training:
//   z[t,i]     = logit[t,i]
//   M[t,i]     = exp(z[t,i] + u[t] + v[i])     Sinkhorn-Knopp scalings, in the log domain:
//                starting from v = 0, each of `router.sinkhorn.iterations` iterations sets
//                  u[t] = ln k - logsumexp_i (z[t,i] + v[i])           rows sum to k
//                  v[i] = ln (T k / N) - logsumexp_t (z[t,i] + u[t])   columns sum to T k / N
//                so after the last iteration every expert holds exactly T k / N of the mass and
//                every token about k (the closer, the more iterations)
//   S[t]       = top-k of M[t,i] over i = top-k of z[t,i] + v[i]  (u[t] does not change a row's
//                order; ties: the lower expert index)
// Evaluation: S[t] = top-k of z[t,i] (plain top-k, no balancing).
// Both:
//   p[t,i]     = softmax_i(z[t])                     the ordinary router probability
//   g[t,i]     = scale * p[t,i] / sum_{j in S[t]} p[t,j]   (router.normalize resolved, as topk:
//                auto = true for k >= 2), else scale * p[t,i]
// The gradient flows through the softmax only, not through the Sinkhorn scalings (they only
// select). The paper balances exp(logits) with the Sinkhorn algorithm before a top-1 (k = 1 in
// S-BASE); its iteration count is not restated here (not checked): the default of 8 is ours
// (Megatron-LM's Sinkhorn router instead iterates to a tolerance of 1e-4). The state keeps v (N)
// then u (T) in fwork, for the tests and the curious.
#include <algorithm>
#include <cmath>
#include <memory>

#include "backend/check.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

constexpr int kMaxK = 64;  // the schema's limit of router.k

class SinkhornRouter final : public Router {
public:
    explicit SinkhornRouter(const RouterConfig& cfg)
        : K_(cfg.k),
          iters_(cfg.sinkhorn.iterations),
          normalize_(gates_normalized(cfg)),
          scale_(float(cfg.scale)) {
        MOESIM_CHECK(K_ >= 1 && K_ <= kMaxK, "router.k outside the schema's range");
        MOESIM_CHECK(iters_ >= 1, "router.sinkhorn.iterations < 1");
    }

    size_t max_assignments(int T, int, double) const override { return size_t(T) * size_t(K_); }

    void reserve(RouterState& state, int T_max, int N, double) const override {
        MOESIM_CHECK(K_ <= N, "router.k larger than experts.count");
        state.reserve(T_max, N, K_, false);
        state.fwork.resize(size_t(N) + size_t(T_max));
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& pass,
               uint64_t /*seed*/, RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        MOESIM_CHECK(size_t(T) * N <= st.probs.size(), "more tokens than the state was sized for");
        st.T = T;
        st.R = T * K_;
        st.noise_std = 0.0f;
        const bool par = size_t(T) * N > 16384;
        softmax_probs(logits, T, st);
        float* v = st.fwork.data();
        float* u = v + N;
        std::fill_n(v, N, 0.0f);
        std::fill_n(u, T, 0.0f);
        if (pass.training) balance(logits, T, N, u, v, par);
#pragma omp parallel for schedule(static) if (par)
        for (int t = 0; t < T; ++t)
            select(st, t, logits + size_t(t) * N, pass.training ? v : nullptr);
        plan_from_slots(plan, T, T * K_, st.sel.data(), st.sel_gate.data(), nullptr, K_);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N, K = K_;
#pragma omp parallel for schedule(static) if (size_t(T) * N > 16384)
        for (int t = 0; t < T; ++t) {
            const float* p = st.probs.data() + size_t(t) * N;
            const int* sel = st.sel.data() + size_t(t) * K;
            const float* dg = d_slot + size_t(t) * K;
            float* dl = d_logits + size_t(t) * N;
            for (int i = 0; i < N; ++i) dl[i] = d_probs ? d_probs[size_t(t) * N + i] : 0.0f;
            if (normalize_) {
                float zs = 0.0f, dot = 0.0f;
                for (int j = 0; j < K; ++j) {
                    zs += p[sel[j]];
                    dot += scale_ * dg[j] * p[sel[j]];
                }
                for (int j = 0; j < K; ++j) dl[sel[j]] += scale_ * dg[j] / zs - dot / (zs * zs);
            } else {
                for (int j = 0; j < K; ++j) dl[sel[j]] += scale_ * dg[j];
            }
            softmax_backward_row(dl, p, N);
        }
    }

private:
    // The Sinkhorn scalings u (T) and v (N) in the log domain (double sums: a column sums T
    // terms). Rows and columns are each one thread's sequential loop: deterministic.
    void balance(const float* z, int T, int N, float* u, float* v, bool par) const {
        const double log_row = std::log(double(K_)), log_col = std::log(double(T) * K_ / N);
        for (int it = 0; it < iters_; ++it) {
#pragma omp parallel for schedule(static) if (par)
            for (int t = 0; t < T; ++t) {
                const float* zt = z + size_t(t) * N;
                double mx = -INFINITY;
                for (int i = 0; i < N; ++i) mx = std::max(mx, double(zt[i]) + v[i]);
                double s = 0.0;
                for (int i = 0; i < N; ++i) s += std::exp(double(zt[i]) + v[i] - mx);
                u[t] = float(log_row - (mx + std::log(s)));
            }
#pragma omp parallel for schedule(static) if (par)
            for (int i = 0; i < N; ++i) {
                double mx = -INFINITY;
                for (int t = 0; t < T; ++t) mx = std::max(mx, double(z[size_t(t) * N + i]) + u[t]);
                double s = 0.0;
                for (int t = 0; t < T; ++t) s += std::exp(double(z[size_t(t) * N + i]) + u[t] - mx);
                v[i] = float(log_col - (mx + std::log(s)));
            }
        }
    }

    // Token t's K experts of the largest z + v (v null: z alone), best first, ties to the lower
    // index; then their gates from p.
    void select(RouterState& st, int t, const float* z, const float* v) const {
        const int N = st.N, K = K_;
        int* sel = st.sel.data() + size_t(t) * K;
        float* gate = st.sel_gate.data() + size_t(t) * K;
        const float* p = st.probs.data() + size_t(t) * N;
        float best[kMaxK];
        int n = 0;
        for (int i = 0; i < N; ++i) {
            const float s = z[i] + (v ? v[i] : 0.0f);
            if (n == K && !(s > best[K - 1])) continue;
            int j = n < K ? n++ : K - 1;
            while (j > 0 && s > best[j - 1]) {
                best[j] = best[j - 1];
                sel[j] = sel[j - 1];
                --j;
            }
            best[j] = s;
            sel[j] = i;
        }
        float zs = 0.0f;
        for (int j = 0; j < K; ++j) zs += p[sel[j]];
        for (int j = 0; j < K; ++j) gate[j] = scale_ * (normalize_ ? p[sel[j]] / zs : p[sel[j]]);
    }

    int K_, iters_;
    bool normalize_;
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_sinkhorn(const RouterConfig& cfg) {
    return std::make_unique<SinkhornRouter>(cfg);
}

}  // namespace moe
