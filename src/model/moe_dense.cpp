// The MoE layer's path for a dense plan (Soft MoE: Puigcerver et al. 2023; the router is
// routing/routers/soft_slots.cpp, the plan's dense kind is described in routing/routing_plan.h).
// With A = N*S slot rows, the plan's dispatch weights Dw (T, A) and combine weights Cw (T, A):
//
//   Xs = Dwᵀ x                      (A, D)   every slot a weighted mix of the batch's tokens
//   Ys = E(Xs)                      (A, D)   expert i on its slot rows [i*S, (i+1)*S), the same
//                                            grouped products as the sparse path
//   y  = Cw Ys                      (T, D)
//
// Backward, with dy (T, D):
//   dCw = dy Ysᵀ  (T, A),   dYs = Cwᵀ dy  (A, D),   experts backward to dXs (A, D),
//   dx  = Dw dXs  (T, D),   dDw = x dXsᵀ  (T, A)
// and [dDw | dCw] go to the router (its d_slot) through dslot_task_. The workspaces are the sparse
// path's, sized for A = N*S rows (the router's max_assignments); dslot_task_ and dslot_aux_ grow
// to the router's 2*T*A weights here.
#include <algorithm>

#include "backend/check.h"
#include "model/moe_layer.h"

namespace moe {

void MoeLayer::reserve_dense(int T_max, Backend* be) {
    const size_t A = router_->max_assignments(T_max, N_, max_factor_), TA = size_t(T_max) * A;
    plan_.reserve_dense(T_max, A);
    dslot_task_.resize(std::max(dslot_task_.size(), 2 * TA));
    dslot_aux_.resize(std::max(dslot_aux_.size(), 2 * TA));
    if (be && !be->host_memory()) {
        pd_.dispatch.allocate(be, TA);
        pd_.combine.allocate(be, TA);
        dslot_dense_.allocate(be, 2 * TA);
    }
}

void MoeLayer::forward_dense(Backend& be, ParamStore& ps, float* y, const float* x, int T) {
    const int A = plan_.assignments();
    const int* off = plan_.offsets.data();
    MOESIM_CHECK(size_t(A) * D_ <= xd_.size(), "more slots than the layer was reserved for");
    const size_t TA = size_t(T) * A;
    pd_.d_dispatch = upload(be, pd_.dispatch, plan_.dispatch.data(), TA);
    pd_.d_combine = upload(be, pd_.combine, plan_.combine.data(), TA);
    // Dispatch: Xs = Dwᵀ x.
    be.gemm(xd_.data(), pd_.d_dispatch, x, A, D_, T, true, false, 0.0f);
    // Experts, one product per expert's slot rows.
    be.gemm_grouped_rows_bias(pre_.data(), xd_.data(), ps.p(w1), size_t(D_) * H1_, ps.p(b1), H1_,
                              off, N_, H1_, D_);
    be.act_forward(h_.data(), pre_.data(), A, H_, act_);
    be.gemm_grouped_rows_bias(yd_.data(), h_.data(), ps.p(w2), size_t(H_) * D_, ps.p(b2), D_, off,
                              N_, D_, H_);
    // Combine: y = Cw Ys.
    be.gemm(y, pd_.d_combine, yd_.data(), T, D_, A, false, false, 0.0f);
}

void MoeLayer::backward_dense(Backend& be, ParamStore& ps, float* dx, const float* dy,
                              const float* x, int T) {
    const int A = plan_.assignments();
    const int* off = plan_.offsets.data();
    const size_t TA = size_t(T) * A;
    // [dDw | dCw] in the backend's memory: dslot_task_ itself on a host backend
    const bool host = be.host_memory();
    float* dDw = host ? dslot_task_.data() : dslot_dense_.data();
    float* dCw = dDw + TA;
    // Combine backward: dCw = dy Ysᵀ reads Ys, then dYs = Cwᵀ dy is written over it.
    be.gemm(dCw, dy, yd_.data(), T, A, D_, false, true, 0.0f);
    float* dys = yd_.data();
    be.gemm(dys, pd_.d_combine, dy, A, D_, T, true, false, 0.0f);
    // Experts backward over the slot rows (as the sparse path; workspaces reused as they die).
    be.gemm_grouped_wgrad(ps.g(w2), size_t(H_) * D_, h_.data(), dys, off, N_, H_, D_);
    be.bias_grad_grouped(ps.g(b2), D_, dys, off, N_, D_);
    float* dh = h_.data();
    be.gemm_grouped_rows(dh, dys, ps.p(w2), size_t(H_) * D_, off, N_, H_, D_, true, 0.0f);
    float* dpre = pre_.data();
    be.act_backward(dpre, dh, pre_.data(), A, H_, act_);
    be.gemm_grouped_wgrad(ps.g(w1), size_t(D_) * H1_, xd_.data(), dpre, off, N_, D_, H1_);
    be.bias_grad_grouped(ps.g(b1), H1_, dpre, off, N_, H1_);
    float* dxs = xd_.data();
    be.gemm_grouped_rows(dxs, dpre, ps.p(w1), size_t(D_) * H1_, off, N_, D_, H1_, true, 0.0f);
    // Dispatch backward: dx = Dw dXs, dDw = x dXsᵀ.
    be.gemm(dx, pd_.d_dispatch, dxs, T, D_, A, false, false, 0.0f);
    be.gemm(dDw, x, dxs, T, A, D_, false, true, 0.0f);
    if (!host) be.to_host(dslot_task_.data(), dDw, 2 * TA * sizeof(float));  // to the router
}

}  // namespace moe
