// Causal multi-head self-attention over whole sequences (the transformer's mixing sublayer):
//   [q | k | v] = x Wqkv        (T, 3D), one fused projection (the Q, K and V maps side by side)
//   a           = attention(q, k, v)   per sequence and head, causal, scale 1/sqrt(D/H)
//   y           = a Wo          (T, D)
// No biases. x, y, dx, dy (T, D), T = nseq * S tokens, sequence s at rows s*S .. s*S+S-1.
#pragma once

#include <string>

#include "backend/buffer.h"
#include "model/layers/linear.h"

namespace moe {

struct Attention {
    Linear qkv, o;
    int D = 0, H = 0, hd = 0, S = 0;
    // workspace in the backend's memory, sized by reserve()
    Buf<float> qkv_act, probs, att, datt, dqkv, dscores;

    // H heads over sequences of S tokens.
    void declare(ParamStore& ps, const std::string& name, int D_, int H_, int S_);
    void reserve(int T_max, Backend* be = nullptr);
    void forward(Backend& be, ParamStore& ps, float* y, const float* x, int T);
    // dx overwritten.
    void backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x, int T);
    float scale() const;
};

}  // namespace moe
