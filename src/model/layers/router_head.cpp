#include "model/layers/router_head.h"

#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "backend/rng.h"

namespace moe {

void RouterHead::declare(const RouterConfig& cfg, ParamStore& ps, const std::string& name, int D,
                         int L, uint64_t seed) {
    D_ = D;
    L_ = L;
    jitter_ = float(cfg.jitter);
    seed_ = seed;
    // Router weights start small so that early routing is near uniform (Fedus et al. 2021 §2.4).
    w_ = ps.add(name + ".router.w", size_t(D) * L, Init::normal, 0.1f / std::sqrt(float(D)));
    param_count_ = size_t(D) * L;
}

void RouterHead::reserve(int T_max) {
    if (jitter_ > 0.0f) {
        xr_.resize(size_t(T_max) * D_);
        u_.resize(size_t(T_max) * D_);
        dxr_.resize(size_t(T_max) * D_);
    }
}

void RouterHead::forward(Backend& be, ParamStore& ps, float* logits, const float* x, int T,
                         bool training, uint64_t noise_key) {
    jittered_ = training && jitter_ > 0.0f;
    if (jittered_) {
        MOESIM_CHECK(size_t(T) * D_ <= xr_.size(), "more tokens than the head was reserved for");
        const Rng rng{seed_, kStreamRouterJitter, noise_key};
        const size_t n = size_t(T) * D_;
        for (size_t j = 0; j < n; ++j) {
            // u in [1 - eps, 1 + eps): uniform() is in [0, 1)
            u_[j] = 1.0f - jitter_ + 2.0f * jitter_ * rng.uniform(uint64_t(j));
            xr_[j] = x[j] * u_[j];
        }
    }
    be.gemm(logits, router_input(x), ps.p(w_), T, L_, D_, false, false, 0.0f);
}

void RouterHead::add_jittered_dx(float* dx, int T) const {
    const size_t n = size_t(T) * D_;
    for (size_t j = 0; j < n; ++j) dx[j] += dxr_[j] * u_[j];
}

void RouterHead::backward(Backend& be, ParamStore& ps, float* dx, const float* d_logits,
                          const float* x, int T) {
    be.gemm(ps.g(w_), router_input(x), d_logits, D_, L_, T, true, false, 1.0f);
    if (jittered_) {
        be.gemm(dxr_.data(), d_logits, ps.p(w_), T, D_, L_, false, true, 0.0f);
        add_jittered_dx(dx, T);
    } else {
        be.gemm(dx, d_logits, ps.p(w_), T, D_, L_, false, true, 1.0f);
    }
}

void RouterHead::param_grad(Backend& be, ParamStore&, float* out, const float* d_logits,
                            const float* x, int T) {
    be.gemm(out, router_input(x), d_logits, D_, L_, T, true, false, 0.0f);
}

}  // namespace moe
