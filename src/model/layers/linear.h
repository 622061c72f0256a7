// Linear map y = x W + b. x, dx (T, in); y, dy (T, out); W, dW (in, out); b, db (out).
#pragma once

#include <cmath>
#include <string>

#include "backend/backend.h"
#include "model/params.h"

namespace moe {

struct Linear {
    int in = 0, out = 0;
    int w = -1, b = -1;  // tensors in the ParamStore (b = -1: no bias)

    // Declares W ~ N(0, 1/in) (LeCun) and b = 0.
    void declare(ParamStore& ps, const std::string& name, int in_, int out_, bool bias = true) {
        in = in_;
        out = out_;
        w = ps.add(name + ".w", size_t(in) * out, Init::normal, 1.0f / std::sqrt(float(in)));
        b = bias ? ps.add(name + ".b", size_t(out), Init::zeros) : -1;
    }
    void forward(Backend& be, ParamStore& ps, float* y, const float* x, int T) const {
        if (b >= 0) {
            const int off[2] = {0, T};
            be.gemm_grouped_rows_bias(y, x, ps.p(w), 0, ps.p(b), 0, off, 1, out, in);
        } else {
            be.gemm(y, x, ps.p(w), T, out, in, false, false, 0.0f);
        }
    }
    // dx (if not null) is overwritten, or accumulated into when accumulate_dx.
    void backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x, int T,
                  bool accumulate_dx = false) const {
        be.gemm(ps.g(w), x, dy, in, out, T, true, false, 1.0f);
        if (b >= 0) {
            const int off[2] = {0, T};
            be.bias_grad_grouped(ps.g(b), 0, dy, off, 1, out);
        }
        if (dx) be.gemm(dx, dy, ps.p(w), T, in, out, false, true, accumulate_dx ? 1.0f : 0.0f);
    }
};

}  // namespace moe
