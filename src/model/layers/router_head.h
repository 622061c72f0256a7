// The router's score head: how an MoE layer makes its router logits (T, L) from its input x (T, D),
// L = the router's logit_width(N). The router then turns the logits into a plan.
//
//   jitter (router.jitter = eps > 0, training only; Switch Transformer, Fedus et al. 2021):
//     xr[t,d] = x[t,d] * u[t,d],  u ~ U(1 - eps, 1 + eps), drawn from the counter-based
//     generator keyed by (seed, kStreamRouterJitter, noise_key, t*D + d); evaluation: xr = x.
//     Only the router sees xr: the experts get x.
//   linear (router.head: linear):   logits = xr Wr                  Wr "<layer>.router.w" (D, L)
//
// Backward takes d_logits (T, L), accumulates the parameter gradients (with the jittered input)
// and adds the router path's input gradient, times u under jitter, into dx.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "config/config.h"
#include "model/params.h"

namespace moe {

class RouterHead {
public:
    // Declares the parameters "<name>.router.*" of a head of L logits per token on inputs of D.
    void declare(const RouterConfig& cfg, ParamStore& ps, const std::string& name, int D, int L,
                 uint64_t seed);
    void reserve(int T_max);

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
    // The tensor that maps the input (linear: Wr).
    int input_tensor() const { return w_; }

private:
    // The router's input of the last forward: x, or its jittered copy.
    const float* router_input(const float* x) const { return jittered_ ? xr_.data() : x; }
    // The jittered gradient dxr (T, D) times u, added into dx.
    void add_jittered_dx(float* dx, int T) const;

    int D_ = 0, L_ = 0;
    float jitter_ = 0.0f;
    uint64_t seed_ = 0;
    int w_ = -1;
    size_t param_count_ = 0;
    bool jittered_ = false;            // the last forward jittered its input
    std::vector<float> xr_, u_, dxr_;  // (T_max, D) each when jitter > 0
};

}  // namespace moe
