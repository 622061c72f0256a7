// The patch experts of an MoE layer (experts.kind: patch; Chen, Deng, Wu, Gu and Li 2022, "Towards
// Understanding the Mixture-of-Experts Layer in Deep Learning", §3): expert m is a two-layer CNN
// over the P patches x_1..x_P (dimension d) of its input row,
//
//   pre[p, j] = <w_{m,j}, x_p> + b_{m,j}                 j = 0 .. 2J-1   (kernel = stride = d)
//   f_m(x)_0  = sum_p sum_{j <  J} sigma(pre[p, j])       class 0 (y = +1)
//   f_m(x)_1  = sum_p sum_{j >= J} sigma(pre[p, j])       class 1 (y = -1)
//
// with sigma(z) = z^3 (cubic) or z (linear). W1 "<layer>.experts.w1" (N, d, 2J) and b1
// "<layer>.experts.b1" (N, 2J). The dispatched rows Xd (A, P d) are the rows (A P, d) of the
// patches, so the first layer is the grouped product of the FFN experts with every segment
// offset times P: O(A) rows of work, never O(T N). The activation and the fixed sum run on the
// host (experts.kind: patch is refused on device: cuda), in a fixed order.
#include <cmath>

#include "backend/check.h"
#include "model/moe_layer.h"

namespace moe {

void MoeLayer::patch_forward(Backend& be, ParamStore& ps, int A, const int* off) {
    MOESIM_CHECK(be.host_memory(), "patch experts run on the host (device: cpu)");
    const int C = 2 * pJ_;
    for (int i = 0; i <= N_; ++i) poff_[size_t(i)] = off[i] * P_;
    be.gemm_grouped_rows_bias(pre_.data(), xd_.data(), ps.p(w1), size_t(pdim_) * C, ps.p(b1),
                              size_t(C), poff_.data(), N_, C, pdim_);
    const float* pre = pre_.data();
    float* yd = yd_.data();
    const bool cubic = pact_ == PatchActivation::cubic;
    for (int a = 0; a < A; ++a) {
        double s[2] = {0.0, 0.0};
        const float* r = pre + size_t(a) * P_ * C;
        for (int p = 0; p < P_; ++p)
            for (int j = 0; j < C; ++j) {
                const double z = r[size_t(p) * C + j];
                s[j < pJ_ ? 0 : 1] += cubic ? z * z * z : z;
            }
        yd[size_t(a) * 2] = float(s[0]);
        yd[size_t(a) * 2 + 1] = float(s[1]);
    }
}

void MoeLayer::patch_backward(Backend& be, ParamStore& ps, int A) {
    const int C = 2 * pJ_;
    // dpre[a, p, j] = dY[a, class of j] * sigma'(pre[a, p, j]), in place over pre_
    const float* dyd = yd_.data();
    float* pre = pre_.data();
    const bool cubic = pact_ == PatchActivation::cubic;
    for (int a = 0; a < A; ++a) {
        float* r = pre + size_t(a) * P_ * C;
        for (int p = 0; p < P_; ++p)
            for (int j = 0; j < C; ++j) {
                const float g = dyd[size_t(a) * 2 + (j < pJ_ ? 0 : 1)];
                float& z = r[size_t(p) * C + j];
                z = cubic ? 3.0f * z * z * g : g;
            }
    }
    const float* dpre = pre_.data();
    be.gemm_grouped_wgrad(ps.g(w1), size_t(pdim_) * C, xd_.data(), dpre, poff_.data(), N_, pdim_,
                          C);
    be.bias_grad_grouped(ps.g(b1), size_t(C), dpre, poff_.data(), N_, C);
    // dXd (A P, d) = dpre W1ᵀ over Xd, which the weight gradient has read
    be.gemm_grouped_rows(xd_.data(), dpre, ps.p(w1), size_t(pdim_) * C, poff_.data(), N_, pdim_, C,
                         true, 0.0f);
}

}  // namespace moe
