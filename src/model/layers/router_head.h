// The router's score head: how an MoE layer makes its router logits (T, L) from its input x (T, D),
// L = the router's logit_width(N). The router then turns the logits into a plan.
//
//   jitter (router.jitter = eps > 0, training only; Switch Transformer, Fedus et al. 2021):
//     xr[t,d] = x[t,d] * u[t,d],  u ~ U(1 - eps, 1 + eps), drawn from the counter-based
//     generator keyed by (seed, kStreamRouterJitter, noise_key, t*D + d); evaluation: xr = x.
//     Only the router sees xr: the experts get x.
//   linear (router.head: linear):   logits = xr Wr                  Wr "<layer>.router.w" (D, L)
//     tied over P patches (router.patch_tied; Chen et al. 2022's h_m(x) = sum_p <theta_m, x_p>):
//     Wr is (D/P, L) and logits = xr [Wr; ..; Wr] with Wr stacked P times, the same as
//     sum_p xr_p Wr; the stacked copy is made in forward, the gradient of Wr is the sum of the P
//     blocks of xrᵀ d_logits, all with the backend's ops (any device).
//   cosine (router.head: cosine; X-MoE, Chi et al. 2022):
//     h = xr Wp                 Wp "<layer>.router.proj" (D, d), d = router.cosine.dim
//     logits[t,i] = <h_t / |h_t|, e_i / |e_i|> / tau
//                               e "<layer>.router.experts" (L, d), one embedding per logit
//     tau = tau0 * exp(v)       v "<layer>.router.log_tau_scale" (1), starts at 0;
//                               tau0 = router.cosine.temperature
//   A norm below kNormFloor is replaced by kNormFloor (h / max(|h|, floor)), as a normalisation
//   with an epsilon does; the gradient follows that definition on both sides of the floor.
//
// Backward takes d_logits (T, L), accumulates the parameter gradients (with the jittered input)
// and adds the router path's input gradient, times u under jitter, into dx. Forward keeps what
// backward reads (h/|h|, |h|, e/|e|, |e|, the cosines), so backward may run several times (the
// statistics' task and auxiliary parts) after one forward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/buffer.h"
#include "config/config.h"
#include "model/params.h"

namespace moe {

class RouterHead {
public:
    // Declares the parameters "<name>.router.*" of a head of L logits per token on inputs of D.
    // patches > 1: the linear head's weight is tied across that many patches of D / patches.
    void declare(const RouterConfig& cfg, ParamStore& ps, const std::string& name, int D, int L,
                 uint64_t seed, int patches = 1);
    // be: the backend whose memory holds the tied head's stacked weight (null: host).
    void reserve(int T_max, Backend* be = nullptr);

    // logits (T, L) overwritten from x (T, D). training: jitter (if any), keyed by noise_key.
    void forward(Backend& be, ParamStore& ps, float* logits, const float* x, int T, bool training,
                 uint64_t noise_key);
    // From d_logits (T, L) and the x of the last forward: accumulates the head's parameter
    // gradients and ADDS the router path's input gradient into dx (T, D).
    void backward(Backend& be, ParamStore& ps, float* dx, const float* d_logits, const float* x,
                  int T);
    // The gradient of the head's parameters alone from d_logits, overwriting out
    // (param_count() floats: each tensor's gradient in declaration order); for the statistics.
    void param_grad(Backend& be, ParamStore& ps, float* out, const float* d_logits, const float* x,
                    int T);
    size_t param_count() const { return param_count_; }
    // The tensor that maps the input (linear: Wr, cosine: Wp).
    int input_tensor() const { return w_; }
    // The cosine head's tensors (-1 for the linear head).
    int emb_tensor() const { return emb_; }
    int tau_tensor() const { return tau_; }

    static constexpr float kNormFloor = 1e-6f;

private:
    // The cosine head's gradients from d_logits: into g_proj (D, d), g_emb (L, d), g_tau (1)
    // with beta (0: overwrite, 1: accumulate), and, when dx is not null, the router path's input
    // gradient added into dx.
    void cosine_backward(Backend& be, ParamStore& ps, const float* d_logits, const float* x, int T,
                         float* g_proj, float* g_emb, float* g_tau, float beta, float* dx);
    float inv_tau(const ParamStore& ps) const;
    // The router's input of the last forward: x, or its jittered copy.
    const float* router_input(const float* x) const { return jittered_ ? xr_.data() : x; }
    // The jittered gradient dxr (T, D) times u, added into dx.
    void add_jittered_dx(float* dx, int T) const;

    // The linear head's (D, L) weight: Wr itself, or (tied) its P stacked copies in wt_.
    const float* weight(Backend& be, ParamStore& ps);
    // The tied head: the P blocks of the stacked gradient gt_ summed into out (beta 0: written
    // over, 1: accumulated).
    void fold_tied_grad(Backend& be, float* out, float beta);

    int D_ = 0, L_ = 0;
    int P_ = 1;           // patches the linear head's weight is tied across
    Buf<float> wt_, gt_;  // tied: (D, L) the stacked weight and its gradient
    bool cosine_ = false;
    int d_ = 0;          // cosine: the projection's dimension
    float tau0_ = 1.0f;  // cosine: the initial temperature
    float jitter_ = 0.0f;
    uint64_t seed_ = 0;
    int w_ = -1, emb_ = -1, tau_ = -1;
    size_t param_count_ = 0;
    bool jittered_ = false;            // the last forward jittered its input
    std::vector<float> xr_, u_, dxr_;  // (T_max, D) each when jitter > 0
    // cosine: forward's hn (T, d) = h/|h|, hnorm (T), en (L, d) = e/|e|, enorm (L), cos (T, L);
    // backward's dcos (T, L), dh (T, d), de (L, d)
    std::vector<float> hn_, hnorm_, en_, enorm_, cos_, dcos_, dh_, de_;
};

}  // namespace moe
