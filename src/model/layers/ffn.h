// Dense feed-forward block: y = act(x W1 + b1) W2 + b2 (with swiglu: W1 gives [gate | up] and
// act = silu(gate) * up, Shazeer 2020). Used for the dense blocks and for the shared experts of
// an MoE layer (DeepSeekMoE): `shared` shared experts of width d_ff are one FFN of width
// shared * d_ff, which computes the same sum of expert outputs.
// x, y, dx, dy (T, D); pre (T, H or 2H), h (T, H): saved by forward for backward.
#pragma once

#include <string>
#include <vector>

#include "backend/buffer.h"
#include "model/layers/linear.h"

namespace moe {

struct Ffn {
    Linear up, down;
    int H = 0;
    Activation act = Activation::gelu;
    Buf<float> pre, h, dh, dpre;  // workspace in the backend's memory, sized by reserve()

    void declare(ParamStore& ps, const std::string& name, int D, int H_, Activation act_);
    void reserve(int T_max, Backend* be = nullptr);
    void forward(Backend& be, ParamStore& ps, float* y, const float* x, int T);
    // dx overwritten, or accumulated into when accumulate_dx.
    void backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x, int T,
                  bool accumulate_dx);
};

}  // namespace moe
