// Soft MoE (Puigcerver, Riquelme, Mustafa & Houlsby 2023, "From Sparse to Soft Mixtures of
// Experts", §2.1 and Algorithm 1). Each of the N experts has S slots (router.soft_slots.slots, the
// paper's p); with the T tokens of the batch x (T, D) and Phi (D, N*S) the router weights:
//
//   logits = x Phi                                   (T, N*S)
//   D[t,j] = exp(logits[t,j]) / sum_t' exp(logits[t',j])    dispatch: softmax over the TOKENS
//   C[t,j] = exp(logits[t,j]) / sum_j' exp(logits[t,j'])    combine:  softmax over the SLOTS
//   Xs     = Dᵀ x                                    (N*S, D) slot j = a weighted mix of tokens
//   Ys[j]  = E_{j / S}(Xs[j])                        expert i processes slots i*S .. i*S+S-1
//   y      = C Ys                                    (T, D)
//
// The router writes a dense plan (routing_plan.h): A = N*S slot rows, offsets[i] = i*S, and the
// weights D and C; the MoE layer's dense path (model/moe_dense.cpp) runs the products. The
// token group of the softmax over tokens is the batch of the forward pass: a training batch, or
// one evaluation chunk.
//
// Deviations from the paper: no l2 normalisation of x and Phi and no learnable scale (the paper's
// §2.3 "Normalization", which it needs when the model dimension grows large; this simulator's
// models are small, and its router weights start small instead); Phi starts like every router
// weight (normal, std 0.1 / sqrt(D)), not LeCun normal.
//
// Probabilities for the statistics and the flip rate: p[t,i] = sum of C[t,j] over expert i's
// slots (the combine mass of token t on expert i; it sums to 1 over i). The plan is `weighted`:
// the load of expert i is its dispatch weight mass, sum_t sum_{j of i} D[t,j] = S, the same for
// every expert (Soft MoE is balanced by construction).
//
// State: fwork = [D (T, N*S) | C (T, N*S)]. The router's "slots" for backward are these 2*T*N*S
// weights: d_slot = [dD | dC] (state.R = 2*T*N*S), and
//   dlogits[t,j] = C[t,j] (dC'[t,j] - sum_j' dC'[t,j'] C[t,j'])        rows
//                + D[t,j] (dD[t,j] - sum_t' dD[t',j] D[t',j])          columns
// with dC'[t,j] = dC[t,j] + d_probs[t, j / S] (p is a sum of C).
#include <algorithm>
#include <memory>

#include "backend/check.h"
#include "backend/vec_math.h"
#include "routing/router.h"

namespace moe {
namespace {

class SoftSlotsRouter final : public Router {
public:
    explicit SoftSlotsRouter(const RouterConfig& cfg) : S_(cfg.soft_slots.slots) {
        MOESIM_CHECK(S_ >= 1, "router.soft_slots.slots outside the schema's range");
    }

    size_t max_assignments(int, int N, double) const override { return size_t(N) * size_t(S_); }
    int logit_width(int N) const override { return N * S_; }
    PlanKind plan_kind() const override { return PlanKind::dense; }

    void reserve(RouterState& state, int T_max, int N, double) const override {
        state.reserve(T_max, N, 0, false);
        const size_t L = size_t(N) * S_;
        state.fwork.resize(2 * size_t(T_max) * L + L);  // D, C, column scratch
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& /*pass*/,
               uint64_t /*seed*/, RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N, L = N * S_;
        const size_t TL = size_t(T) * L;
        MOESIM_CHECK(2 * TL + L <= st.fwork.size(), "more tokens than the state was sized for");
        MOESIM_CHECK(TL <= plan.dispatch.size(), "the plan's dense weights were not reserved");
        st.T = T;
        st.R = int(2 * TL);
        st.noise_std = 0.0f;
        float* Dw = st.fwork.data();
        float* Cw = Dw + TL;
        float* colmax = Cw + TL;
        const bool par = TL > 16384;
        // Dispatch: a softmax down each column, over the tokens. Columns are independent; each
        // sums its tokens in token order.
#pragma omp parallel for schedule(static) if (par)
        for (int j = 0; j < L; ++j) {
            float mx = logits[j];
            for (int t = 1; t < T; ++t) mx = std::max(mx, logits[size_t(t) * L + j]);
            colmax[j] = mx;
        }
        vec_exp_columns(Dw, logits, colmax, T, L);
#pragma omp parallel for schedule(static) if (par)
        for (int j = 0; j < L; ++j) {
            float sum = 0.0f;
            for (int t = 0; t < T; ++t) sum += Dw[size_t(t) * L + j];
            for (int t = 0; t < T; ++t) Dw[size_t(t) * L + j] /= sum;
        }
        // Combine: a softmax along each row, over the slots; p[t,i] = expert i's share of it.
#pragma omp parallel for schedule(static) if (par)
        for (int t = 0; t < T; ++t) {
            const float* z = logits + size_t(t) * L;
            float* c = Cw + size_t(t) * L;
            vec_exp_shifted(c, z, vec_max(z, size_t(L)), size_t(L));
            const float sum = vec_sum(c, size_t(L));
            for (int j = 0; j < L; ++j) c[j] /= sum;
            float* p = st.probs.data() + size_t(t) * N;
            for (int i = 0; i < N; ++i) p[i] = vec_sum(c + size_t(i) * S_, size_t(S_));
        }
        // The dense plan: expert i's slot rows are [i*S, (i+1)*S).
        plan.kind = PlanKind::dense;
        plan.T = T;
        plan.A = L;
        plan.capacity = 0;
        for (int i = 0; i <= N; ++i) plan.offsets[size_t(i)] = i * S_;
        std::fill(plan.routed.begin(), plan.routed.end(), S_);
        std::fill(plan.dropped.begin(), plan.dropped.end(), 0);
        std::copy_n(Dw, TL, plan.dispatch.data());
        std::copy_n(Cw, TL, plan.combine.data());
        plan.weighted = true;
        std::fill(plan.mass.begin(), plan.mass.end(), 0.0);
        for (int t = 0; t < T; ++t)
            for (int j = 0; j < L; ++j) plan.mass[size_t(j / S_)] += double(Dw[size_t(t) * L + j]);
    }

    void backward(const RouterState& st, const float* d_slot, const float* d_probs,
                  float* d_logits) const override {
        const int T = st.T, N = st.N, L = N * S_;
        const size_t TL = size_t(T) * L;
        const float* Dw = st.fwork.data();
        const float* Cw = Dw + TL;
        const float* dD = d_slot;
        const float* dC = d_slot + TL;
        const bool par = TL > 16384;
        // Rows: the combine softmax (with p's gradient added to its slots).
#pragma omp parallel for schedule(static) if (par)
        for (int t = 0; t < T; ++t) {
            const float* c = Cw + size_t(t) * L;
            const float* dc = dC + size_t(t) * L;
            float* dl = d_logits + size_t(t) * L;
            for (int j = 0; j < L; ++j)
                dl[j] = dc[j] + (d_probs ? d_probs[size_t(t) * N + j / S_] : 0.0f);
            softmax_backward_row(dl, c, L);
        }
        // Columns: the dispatch softmax, added.
#pragma omp parallel for schedule(static) if (par)
        for (int j = 0; j < L; ++j) {
            float dot = 0.0f;
            for (int t = 0; t < T; ++t) dot += dD[size_t(t) * L + j] * Dw[size_t(t) * L + j];
            for (int t = 0; t < T; ++t) {
                const size_t e = size_t(t) * L + j;
                d_logits[e] += Dw[e] * (dD[e] - dot);
            }
        }
    }

private:
    // y[t,j] = exp(x[t,j] - shift[j]) over a (T, L) block, one vectorised call per row.
    static void vec_exp_columns(float* y, const float* x, const float* shift, int T, int L) {
#pragma omp parallel for schedule(static) if (size_t(T) * L > 16384)
        for (int t = 0; t < T; ++t) {
            float* yr = y + size_t(t) * L;
            const float* xr = x + size_t(t) * L;
            for (int j = 0; j < L; ++j) yr[j] = xr[j] - shift[j];
            vec_exp_shifted(yr, yr, 0.0f, size_t(L));
        }
    }

    int S_;
};

}  // namespace

std::unique_ptr<Router> make_soft_slots(const RouterConfig& cfg) {
    return std::make_unique<SoftSlotsRouter>(cfg);
}

}  // namespace moe
