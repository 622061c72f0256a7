#include "model/layers/ffn.h"

namespace moe {

void Ffn::declare(ParamStore& ps, const std::string& name, int D, int H_, Activation act_) {
    H = H_;
    act = act_;
    up.declare(ps, name + ".up", D, act == Activation::swiglu ? 2 * H : H);
    down.declare(ps, name + ".down", H, D);
}

void Ffn::reserve(int T_max, Backend* be) {
    pre.allocate(be, size_t(T_max) * up.out);
    dpre.allocate(be, size_t(T_max) * up.out);
    h.allocate(be, size_t(T_max) * H);
    dh.allocate(be, size_t(T_max) * H);
}

void Ffn::forward(Backend& be, ParamStore& ps, float* y, const float* x, int T) {
    up.forward(be, ps, pre.data(), x, T);
    be.act_forward(h.data(), pre.data(), T, H, act);
    down.forward(be, ps, y, h.data(), T);
}

void Ffn::backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x, int T,
                   bool accumulate_dx) {
    down.backward(be, ps, dh.data(), dy, h.data(), T);
    be.act_backward(dpre.data(), dh.data(), pre.data(), T, H, act);
    up.backward(be, ps, dx, dpre.data(), x, T, accumulate_dx);
}

}  // namespace moe
