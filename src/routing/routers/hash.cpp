// Hash routing (Roller et al. 2021, "Hash Layers For Large Sparse Models"): a fixed assignment of
// tokens to experts that learns nothing. The router logits are not read.
//
// With token ids (token tasks; Pass::token_ids):
//   e_j = U_j(id)                       a fixed uniform hash of the id into [0, N): the
//                                       counter-based draw (seed, kStreamRouting, step 3,
//                                       index id, lane j); the paper's "random hash" of the
//                                       vocabulary
// Without (the clusters task: Pass::input, (T, input_dim) raw features), a locality-sensitive
// hash (SimHash, Charikar 2002): for each hash j, `router.hash.bits` = B fixed random hyperplanes
// through the origin,
//   c_j = sum_b [ <x, w_{j,b}> >= 0 ] 2^b    w_{j,b} ~ N(0, I) of (seed, kStreamRouting, step 1,
//                                            index (j B + b) * input_dim + d)
//   e_j = U_j(c_j)                           the cell's expert: a uniform draw of (seed,
//                                            kStreamRouting, step 2, index c_j, lane j)
// so inputs in the same cell of the B hyperplanes (nearby directions) share their expert, and
// the 2^B cells are spread uniformly over the experts. Every layer uses the same hash (a token
// goes to the same expert index in each MoE layer).
//
// k >= 1: k independent hashes; a duplicate expert moves to the next free index (see
// fixed_assignment.h), gates scale / k each, p = 1/k on the k experts (router entropy
// ln k / ln N, top-1 probability 1/k). The router weights get a zero gradient.
//
// The projection (k B input_dim floats) is drawn at the first pass, when the input width arrives
// with it: that pass sizes it once; no later pass allocates.
#include <cmath>
#include <memory>

#include "backend/check.h"
#include "backend/rng.h"
#include "routing/router.h"
#include "routing/routers/fixed_assignment.h"

namespace moe {
namespace {

constexpr int kMaxK = 64;  // the schema's limit of router.k

class HashRouter final : public Router {
public:
    explicit HashRouter(const RouterConfig& cfg)
        : K_(cfg.k), B_(cfg.hash.bits), scale_(float(cfg.scale)) {
        MOESIM_CHECK(K_ >= 1 && K_ <= kMaxK, "router.k outside the schema's range");
        MOESIM_CHECK(B_ >= 1 && B_ <= 62, "router.hash.bits outside the schema's range");
    }

    size_t max_assignments(int T, int, double) const override { return size_t(T) * size_t(K_); }

    void reserve(RouterState& state, int T_max, int N, double) const override {
        MOESIM_CHECK(K_ <= N, "router.k larger than experts.count");
        state.reserve(T_max, N, K_, false);
        state.fwork.clear();  // the projection: drawn at the first pass (input width)
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& pass, uint64_t seed,
               RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        fixed_assignment::begin_pass(st, logits, T, K_, pass,
                                     "hash routing needs the model's input (token ids or raw "
                                     "features)");
        const int Din = pass.input_dim;
        if (!pass.token_ids) draw_projection(st, Din, seed);
        const float* P = st.fwork.data();
        const Rng ids{seed, kStreamRouting, 3}, cells{seed, kStreamRouting, 2};
#pragma omp parallel for schedule(static) if (size_t(T) * K_ * B_ * Din > 65536)
        for (int t = 0; t < T; ++t) {
            uint64_t draws[kMaxK];
            for (int j = 0; j < K_; ++j) {
                if (pass.token_ids) {
                    draws[j] = ids.uniform_int(uint64_t(uint32_t(pass.token_ids[t])), uint64_t(N),
                                               uint32_t(j));
                } else {
                    const float* x = pass.input + size_t(t) * Din;
                    uint64_t code = 0;
                    for (int b = 0; b < B_; ++b) {
                        const float* w = P + size_t(j * B_ + b) * Din;
                        float dot = 0.0f;
                        for (int d = 0; d < Din; ++d) dot += x[d] * w[d];
                        if (dot >= 0.0f) code |= uint64_t(1) << b;
                    }
                    draws[j] = cells.uniform_int(code, uint64_t(N), uint32_t(j));
                }
            }
            fixed_assignment::distinct_experts(st.sel.data() + size_t(t) * K_, draws, K_, N);
            fixed_assignment::fill_token(st, t, K_, scale_);
        }
        plan_from_slots(plan, T, T * K_, st.sel.data(), st.sel_gate.data(), nullptr, K_);
    }

    void backward(const RouterState& st, const float*, const float*,
                  float* d_logits) const override {
        fixed_assignment::zero_backward(st, d_logits);
    }

private:
    // The K B hyperplanes, (K B, Din) row-major, once per state (the first pass sizes fwork).
    void draw_projection(RouterState& st, int Din, uint64_t seed) const {
        const size_t n = size_t(K_) * B_ * Din;
        if (st.fwork.size() == n) return;
        MOESIM_CHECK(st.fwork.empty(), "the input width changed between passes");
        st.fwork.resize(n);
        const Rng rng{seed, kStreamRouting, 1};
        for (size_t i = 0; i < n; ++i) st.fwork[i] = rng.normal(i);
    }

    int K_, B_;
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_hash(const RouterConfig& cfg) {
    return std::make_unique<HashRouter>(cfg);
}

}  // namespace moe
