// Random routing: the no-learning baseline a learned router must beat (Roller et al. 2021's
// "random hash", fixed per input). Each distinct input gets k uniformly random experts, the same
// at every step: a hash of the input's exact identity, with no locality.
//
//   id    = the token id (Pass::token_ids), or, for the clusters task, a 64-bit hash of the raw
//           input's bytes: h = splitmix64 chained over the bit patterns of its input_dim floats
//   e_j   = U_j(id)    a uniform draw in [0, N) of (seed, kStreamRouting, step 4 for token ids
//                      or 5 for input bytes, index id, lane j)
//
// The difference from `hash`: hash's cells of random hyperplanes send nearby inputs to the same
// expert (an expert sees a region of the input space); here two inputs that differ in one bit go
// to independent experts (an expert sees a uniform sample of all inputs). With token ids the two
// are both uniform hashes of the id (different draws). A fixed training set (data.train_size > 0)
// sees each example on the same experts at every step; held-out examples and fresh samples
// (data.train_size: 0) are new inputs, so new random experts.
//
// k >= 1 distinct experts, gates scale / k, p = 1/k on them, zero router gradient: as hash
// (fixed_assignment.h).
#include <bit>
#include <memory>

#include "backend/check.h"
#include "backend/rng.h"
#include "routing/router.h"
#include "routing/routers/fixed_assignment.h"

namespace moe {
namespace {

constexpr int kMaxK = 64;  // the schema's limit of router.k

class RandomRouter final : public Router {
public:
    explicit RandomRouter(const RouterConfig& cfg) : K_(cfg.k), scale_(float(cfg.scale)) {
        MOESIM_CHECK(K_ >= 1 && K_ <= kMaxK, "router.k outside the schema's range");
    }

    size_t max_assignments(int T, int, double) const override { return size_t(T) * size_t(K_); }

    void reserve(RouterState& state, int T_max, int N, double) const override {
        MOESIM_CHECK(K_ <= N, "router.k larger than experts.count");
        state.reserve(T_max, N, K_, false);
    }

    void route(const float* logits, int T, const float* /*bias*/, const Pass& pass, uint64_t seed,
               RouterState& st, RoutingPlan& plan) const override {
        const int N = st.N;
        fixed_assignment::begin_pass(st, logits, T, K_, pass,
                                     "random routing needs the model's input (token ids or raw "
                                     "features)");
        const int Din = pass.input_dim;
        const Rng rng{seed, kStreamRouting, pass.token_ids ? 4u : 5u};
#pragma omp parallel for schedule(static) if (size_t(T) * Din > 65536)
        for (int t = 0; t < T; ++t) {
            uint64_t id = 0;
            if (pass.token_ids) {
                id = uint64_t(uint32_t(pass.token_ids[t]));
            } else {
                const float* x = pass.input + size_t(t) * Din;
                id = rng_detail::splitmix64(uint64_t(Din));
                for (int d = 0; d < Din; ++d)
                    id = rng_detail::splitmix64(id ^ uint64_t(std::bit_cast<uint32_t>(x[d])));
            }
            uint64_t draws[kMaxK];
            for (int j = 0; j < K_; ++j) draws[j] = rng.uniform_int(id, uint64_t(N), uint32_t(j));
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
    int K_;
    float scale_;
};

}  // namespace

std::unique_ptr<Router> make_random(const RouterConfig& cfg) {
    return std::make_unique<RandomRouter>(cfg);
}

}  // namespace moe
