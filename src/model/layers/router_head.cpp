#include "model/layers/router_head.h"

#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "backend/rng.h"

namespace moe {
namespace {

// rows (n, d) of v: writes v / max(|v|, floor) into out and |v| into norm.
void normalize_rows(float* out, float* norm, const float* v, int n, int d) {
    for (int r = 0; r < n; ++r) {
        const float* a = v + size_t(r) * d;
        double s = 0.0;
        for (int j = 0; j < d; ++j) s += double(a[j]) * a[j];
        norm[r] = float(std::sqrt(s));
        const float inv = 1.0f / std::max(norm[r], RouterHead::kNormFloor);
        for (int j = 0; j < d; ++j) out[size_t(r) * d + j] = a[j] * inv;
    }
}

// In place: the gradient w.r.t. v of rows normalised as above, from the gradient g w.r.t. the
// normalised rows vn: (g - vn <g, vn>) / |v| above the floor, g / floor below it.
void normalize_rows_backward(float* g, const float* vn, const float* norm, int n, int d) {
    for (int r = 0; r < n; ++r) {
        float* gr = g + size_t(r) * d;
        const float* a = vn + size_t(r) * d;
        if (norm[r] < RouterHead::kNormFloor) {
            for (int j = 0; j < d; ++j) gr[j] /= RouterHead::kNormFloor;
            continue;
        }
        double dot = 0.0;
        for (int j = 0; j < d; ++j) dot += double(gr[j]) * a[j];
        for (int j = 0; j < d; ++j) gr[j] = float((gr[j] - dot * a[j]) / norm[r]);
    }
}

}  // namespace

void RouterHead::declare(const RouterConfig& cfg, ParamStore& ps, const std::string& name, int D,
                         int L, uint64_t seed, int patches) {
    D_ = D;
    L_ = L;
    P_ = patches;
    MOESIM_CHECK(P_ >= 1 && D % P_ == 0, "a tied router head needs D divisible by the patches");
    MOESIM_CHECK(P_ == 1 || cfg.head == RouterHeadKind::linear, "only the linear head is tied");
    jitter_ = float(cfg.jitter);
    seed_ = seed;
    cosine_ = cfg.head == RouterHeadKind::cosine;
    if (!cosine_) {
        // Router weights start small so that early routing is near uniform (Fedus et al. 2021
        // §2.4); router.init: zero starts them at 0 (exactly uniform; Chen et al. 2022).
        // (tied: the weight of one patch, (D / P, L), at the std of the untied head)
        const size_t rows = size_t(D / P_);
        if (cfg.init == RouterInit::zero)
            w_ = ps.add(name + ".router.w", rows * L, Init::zeros);
        else
            w_ = ps.add(name + ".router.w", rows * L, Init::normal, 0.1f / std::sqrt(float(D)));
        param_count_ = rows * L;
        return;
    }
    MOESIM_CHECK(cfg.init == RouterInit::normal, "router.init: zero needs router.head: linear");
    d_ = cfg.cosine.dim;
    tau0_ = float(cfg.cosine.temperature);
    // Wp: LeCun; e: rows of norm about 1 (the scale only sets how fast Adam turns them).
    w_ = ps.add(name + ".router.proj", size_t(D) * d_, Init::normal, 1.0f / std::sqrt(float(D)));
    emb_ =
        ps.add(name + ".router.experts", size_t(L) * d_, Init::normal, 1.0f / std::sqrt(float(d_)));
    tau_ = ps.add(name + ".router.log_tau_scale", 1, Init::zeros);
    param_count_ = size_t(D) * d_ + size_t(L) * d_ + 1;
}

void RouterHead::reserve(int T_max, Backend* be) {
    if (P_ > 1) {
        wt_.allocate(be, size_t(D_) * L_);
        gt_.allocate(be, size_t(D_) * L_);
    }
    if (jitter_ > 0.0f) {
        xr_.resize(size_t(T_max) * D_);
        u_.resize(size_t(T_max) * D_);
        dxr_.resize(size_t(T_max) * D_);
    }
    if (cosine_) {
        hn_.resize(size_t(T_max) * d_);
        hnorm_.resize(size_t(T_max));
        en_.resize(size_t(L_) * d_);
        enorm_.resize(size_t(L_));
        cos_.resize(size_t(T_max) * L_);
        dcos_.resize(size_t(T_max) * L_);
        dh_.resize(size_t(T_max) * d_);
        de_.resize(size_t(L_) * d_);
    }
}

const float* RouterHead::weight(Backend& be, ParamStore& ps) {
    if (P_ == 1) return ps.p(w_);
    const size_t block = size_t(D_ / P_) * L_;
    for (int p = 0; p < P_; ++p)
        be.copy(wt_.data() + size_t(p) * block, ps.p(w_), block * sizeof(float));
    return wt_.data();
}

void RouterHead::fold_tied_grad(Backend& be, float* out, float beta) {
    const size_t block = size_t(D_ / P_) * L_;
    if (beta == 0.0f) be.copy(out, gt_.data(), block * sizeof(float));
    for (int p = beta == 0.0f ? 1 : 0; p < P_; ++p)
        be.add(out, gt_.data() + size_t(p) * block, block);
}

float RouterHead::inv_tau(const ParamStore& ps) const {
    return std::exp(-ps.p(tau_)[0]) / tau0_;
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
    if (!cosine_) {
        be.gemm(logits, router_input(x), weight(be, ps), T, L_, D_, false, false, 0.0f);
        return;
    }
    MOESIM_CHECK(size_t(T) * L_ <= cos_.size(), "more tokens than the head was reserved for");
    // h = xr Wp into hn_, then normalised in place (its norms kept for backward)
    be.gemm(hn_.data(), router_input(x), ps.p(w_), T, d_, D_, false, false, 0.0f);
    normalize_rows(hn_.data(), hnorm_.data(), hn_.data(), T, d_);
    normalize_rows(en_.data(), enorm_.data(), ps.p(emb_), L_, d_);
    be.gemm(cos_.data(), hn_.data(), en_.data(), T, L_, d_, false, true, 0.0f);
    const float s = inv_tau(ps);
    const size_t n = size_t(T) * L_;
    for (size_t j = 0; j < n; ++j) logits[j] = cos_[j] * s;
}

void RouterHead::add_jittered_dx(float* dx, int T) const {
    const size_t n = size_t(T) * D_;
    for (size_t j = 0; j < n; ++j) dx[j] += dxr_[j] * u_[j];
}

void RouterHead::cosine_backward(Backend& be, ParamStore& ps, const float* d_logits, const float* x,
                                 int T, float* g_proj, float* g_emb, float* g_tau, float beta,
                                 float* dx) {
    // logits = cos * s with s = exp(-v) / tau0: d cos = G s, d v = -sum G * cos * s
    const float s = inv_tau(ps);
    const size_t n = size_t(T) * L_;
    double dv = 0.0;
    for (size_t j = 0; j < n; ++j) {
        dv -= double(d_logits[j]) * cos_[j] * s;
        dcos_[j] = d_logits[j] * s;
    }
    g_tau[0] = beta == 0.0f ? float(dv) : g_tau[0] + float(dv);
    // cos = hn enᵀ: d hn = dcos en (T, d), d en = dcosᵀ hn (L, d); then through the norms
    be.gemm(dh_.data(), dcos_.data(), en_.data(), T, d_, L_, false, false, 0.0f);
    be.gemm(de_.data(), dcos_.data(), hn_.data(), L_, d_, T, true, false, 0.0f);
    normalize_rows_backward(dh_.data(), hn_.data(), hnorm_.data(), T, d_);
    normalize_rows_backward(de_.data(), en_.data(), enorm_.data(), L_, d_);
    const size_t ne = size_t(L_) * d_;
    if (beta == 0.0f)
        std::copy_n(de_.data(), ne, g_emb);
    else
        for (size_t j = 0; j < ne; ++j) g_emb[j] += de_[j];
    // h = xr Wp: d Wp = xrᵀ dh, d xr = dh Wpᵀ
    be.gemm(g_proj, router_input(x), dh_.data(), D_, d_, T, true, false, beta);
    if (!dx) return;
    if (jittered_) {
        be.gemm(dxr_.data(), dh_.data(), ps.p(w_), T, D_, d_, false, true, 0.0f);
        add_jittered_dx(dx, T);
    } else {
        be.gemm(dx, dh_.data(), ps.p(w_), T, D_, d_, false, true, 1.0f);
    }
}

void RouterHead::backward(Backend& be, ParamStore& ps, float* dx, const float* d_logits,
                          const float* x, int T) {
    if (cosine_) {
        cosine_backward(be, ps, d_logits, x, T, ps.g(w_), ps.g(emb_), ps.g(tau_), 1.0f, dx);
        return;
    }
    // (tied: wt_ still holds the stacked weight of forward, whose parameters have not moved)
    const float* w = P_ > 1 ? wt_.data() : ps.p(w_);
    if (P_ > 1) {
        be.gemm(gt_.data(), router_input(x), d_logits, D_, L_, T, true, false, 0.0f);
        fold_tied_grad(be, ps.g(w_), 1.0f);
    } else {
        be.gemm(ps.g(w_), router_input(x), d_logits, D_, L_, T, true, false, 1.0f);
    }
    if (jittered_) {
        be.gemm(dxr_.data(), d_logits, w, T, D_, L_, false, true, 0.0f);
        add_jittered_dx(dx, T);
    } else {
        be.gemm(dx, d_logits, w, T, D_, L_, false, true, 1.0f);
    }
}

void RouterHead::param_grad(Backend& be, ParamStore& ps, float* out, const float* d_logits,
                            const float* x, int T) {
    if (cosine_) {
        float* g_proj = out;
        float* g_emb = g_proj + size_t(D_) * d_;
        float* g_tau = g_emb + size_t(L_) * d_;
        cosine_backward(be, ps, d_logits, x, T, g_proj, g_emb, g_tau, 0.0f, nullptr);
        return;
    }
    if (P_ > 1) {
        be.gemm(gt_.data(), router_input(x), d_logits, D_, L_, T, true, false, 0.0f);
        fold_tied_grad(be, out, 0.0f);
        return;
    }
    be.gemm(out, router_input(x), d_logits, D_, L_, T, true, false, 0.0f);
}

}  // namespace moe
