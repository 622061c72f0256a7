#include "model/layers/attention.h"

#include <cmath>

#include "backend/check.h"

namespace moe {

void Attention::declare(ParamStore& ps, const std::string& name, int D_, int H_, int S_) {
    MOESIM_CHECK(H_ > 0 && D_ % H_ == 0 && S_ > 0, "attention sizes (config rules)");
    D = D_;
    H = H_;
    hd = D_ / H_;
    S = S_;
    qkv.declare(ps, name + ".qkv", D, 3 * D, false);
    o.declare(ps, name + ".o", D, D, false);
}

float Attention::scale() const {
    return 1.0f / std::sqrt(float(hd));
}

void Attention::reserve(int T_max, Backend* be) {
    const size_t T = size_t(T_max), nseq = size_t(T_max / S);
    qkv_act.allocate(be, T * 3 * D);
    dqkv.allocate(be, T * 3 * D);
    att.allocate(be, T * D);
    datt.allocate(be, T * D);
    probs.allocate(be, nseq * H * S * S);
    dscores.allocate(be, nseq * H * S * S);
}

void Attention::forward(Backend& be, ParamStore& ps, float* y, const float* x, int T) {
    MOESIM_CHECK(T % S == 0, "whole sequences");
    qkv.forward(be, ps, qkv_act.data(), x, T);
    be.attention_forward(att.data(), probs.data(), qkv_act.data(), T / S, S, H, hd, scale());
    o.forward(be, ps, y, att.data(), T);
}

void Attention::backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x,
                         int T) {
    o.backward(be, ps, datt.data(), dy, att.data(), T);
    be.attention_backward(dqkv.data(), dscores.data(), datt.data(), qkv_act.data(), probs.data(),
                          T / S, S, H, hd, scale());
    qkv.backward(be, ps, dx, dqkv.data(), x, T);
}

}  // namespace moe
