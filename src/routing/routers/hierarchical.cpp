// Hierarchical routing (Jordan & Jacobs 1994, hierarchical mixtures of experts; Shazeer et al.
// 2017, §B "Hierarchical Mixture of Experts"): a first-level router picks branches, a second-level
// router per branch picks experts within it.
//
// B = router.hierarchical.branches groups of M = N / B consecutive experts (group g holds experts
// g M .. g M + M - 1). The router asks for logit_width(N) = B + N logits per token: columns
// 0..B-1 are the branch logits zb, column B + i is expert i's logit ze[i] (group g's second-level
// router is its M columns).
//   q[t,g]  = softmax_g(zb[t])                            branch probability
//   r[t,i]  = softmax over the M experts of i's group of ze[t]   within-group probability
//   p[t,i]  = q[t,g(i)] r[t,i]                            sums to 1 over the N experts: the
//                                                         statistics' and aux losses' p
//   S[t]    = the KB = router.hierarchical.k_branches branches of largest q (ties: the lower
//             branch), then in each the k = router.k experts of largest r (ties: the lower
//             expert): KB k experts, all distinct; slot t KB k + b k + j is the j-th expert of
//             the b-th branch
//   g[t,i]  = scale * p[t,i] / sum_{j in S[t]} p[t,j]    router.normalize resolved: auto = true
//             when KB k >= 2; else scale * p[t,i] (= scale q r, the product of the two levels)
// Backward: the gates into p, p = q r into both levels, each through its softmax; the selections
// are not differentiable. Shazeer et al. 2017's hierarchical MoE uses noisy top-k gating at both
// levels and multiplies the two gates; here there is no noise and the product is of the two
// softmax probabilities.
#include <algorithm>
#include <cmath>
#include <memory>

#include "backend/check.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

constexpr int kMaxK = 64;  // the schema's limit of router.k

class HierarchicalRouter final : public Router {
public:
    explicit HierarchicalRouter(const RouterConfig& cfg)
        : B_(cfg.hierarchical.branches),
          KB_(cfg.hierarchical.k_branches),
          k_(cfg.k),
          K_(cfg.hierarchical.k_branches * cfg.k),
          normalize_(cfg.normalize == Normalize::yes ||
                     (cfg.normalize == Normalize::auto_k && K_ >= 2)),
          scale_(float(cfg.scale)) {
        MOESIM_CHECK(k_ >= 1 && k_ <= kMaxK && KB_ >= 1 && KB_ <= B_,
                     "router.k or router.hierarchical.k_branches outside their ranges");
    }

    int logit_width(int N) const override { return B_ + N; }

    size_t max_assignments(int T, int, double) const override { return size_t(T) * size_t(K_); }

    // scores: r (T, N); fwork: q (T, B); work: the kept branches (T, KB).
    void reserve(RouterState& state, int T_max, int N, double) const override {
        MOESIM_CHECK(N % B_ == 0, "router.hierarchical.branches does not divide experts.count");
        MOESIM_CHECK(k_ <= N / B_, "router.k larger than the experts of a branch");
        state.reserve(T_max, N, K_, true);
        state.noisy.resize(size_t(T_max) * (B_ + N));
        state.fwork.resize(size_t(T_max) * B_);
        state.work.resize(size_t(T_max) * KB_);
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& /*pass*/,
               uint64_t /*seed*/, RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N, M = N / B_, L = B_ + N;
        MOESIM_CHECK(size_t(T) * N <= st.probs.size(), "more tokens than the state was sized for");
        st.T = T;
        st.R = T * K_;
        st.noise_std = 0.0f;
        std::copy_n(logits, size_t(T) * L, st.noisy.data());
#pragma omp parallel for schedule(static) if (size_t(T) * L > 16384)
        for (int t = 0; t < T; ++t) {
            const float* zb = logits + size_t(t) * L;
            const float* ze = zb + B_;
            float* q = st.fwork.data() + size_t(t) * B_;
            float* r = st.scores.data() + size_t(t) * N;
            float* p = st.probs.data() + size_t(t) * N;
            softmax(q, zb, B_);
            for (int g = 0; g < B_; ++g) softmax(r + g * M, ze + g * M, M);
            for (int i = 0; i < N; ++i) p[i] = q[i / M] * r[i];
            // the KB branches, then k experts in each
            int* kept = st.work.data() + size_t(t) * KB_;
            top(kept, q, 0, B_, KB_);
            int* sel = st.sel.data() + size_t(t) * K_;
            for (int b = 0; b < KB_; ++b) top(sel + b * k_, r, kept[b] * M, M, k_);
            float* gate = st.sel_gate.data() + size_t(t) * K_;
            float zs = 0.0f;
            for (int j = 0; j < K_; ++j) zs += p[sel[j]];
            for (int j = 0; j < K_; ++j)
                gate[j] = scale_ * (normalize_ ? p[sel[j]] / zs : p[sel[j]]);
        }
        plan_from_slots(plan, T, T * K_, st.sel.data(), st.sel_gate.data(), nullptr, K_);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N, M = N / B_, L = B_ + N;
#pragma omp parallel for schedule(static) if (size_t(T) * L > 16384)
        for (int t = 0; t < T; ++t) {
            const float* q = st.fwork.data() + size_t(t) * B_;
            const float* r = st.scores.data() + size_t(t) * N;
            const float* p = st.probs.data() + size_t(t) * N;
            const int* sel = st.sel.data() + size_t(t) * K_;
            const float* dg = d_slot + size_t(t) * K_;
            float* dzb = d_logits + size_t(t) * L;
            float* dze = dzb + B_;
            // dp (in dze for now): d_probs plus the gates' dependence on p
            for (int i = 0; i < N; ++i) dze[i] = d_probs ? d_probs[size_t(t) * N + i] : 0.0f;
            if (normalize_) {
                float zs = 0.0f, dot = 0.0f;
                for (int j = 0; j < K_; ++j) {
                    zs += p[sel[j]];
                    dot += scale_ * dg[j] * p[sel[j]];
                }
                for (int j = 0; j < K_; ++j) dze[sel[j]] += scale_ * dg[j] / zs - dot / (zs * zs);
            } else {
                for (int j = 0; j < K_; ++j) dze[sel[j]] += scale_ * dg[j];
            }
            // p = q r: dq[g] = sum_{i in g} dp_i r_i; dr_i = dp_i q[g]
            for (int g = 0; g < B_; ++g) {
                float dq = 0.0f;
                for (int i = g * M; i < (g + 1) * M; ++i) {
                    dq += dze[i] * r[i];
                    dze[i] *= q[g];
                }
                dzb[g] = dq;
            }
            // through the softmaxes: dz = s (ds - <ds, s>), per branch group and for the branches
            softmax_backward_row(dzb, q, B_);
            for (int g = 0; g < B_; ++g) softmax_backward_row(dze + g * M, r + g * M, M);
        }
    }

private:
    static void softmax(float* out, const float* z, int n) {
        softmax_row(out, z, n);
    }

    // The c indices in [first, first + n) of the largest s, best first, ties to the lower index.
    static void top(int* out, const float* s, int first, int n, int c) {
        float best[kMaxK];
        int m = 0;
        for (int i = first; i < first + n; ++i) {
            const float v = s[i];
            if (m == c && !(v > best[c - 1])) continue;
            int j = m < c ? m++ : c - 1;
            while (j > 0 && v > best[j - 1]) {
                best[j] = best[j - 1];
                out[j] = out[j - 1];
                --j;
            }
            best[j] = v;
            out[j] = i;
        }
    }

    int B_, KB_, k_, K_;
    bool normalize_;
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_hierarchical(const RouterConfig& cfg) {
    return std::make_unique<HierarchicalRouter>(cfg);
}

}  // namespace moe
