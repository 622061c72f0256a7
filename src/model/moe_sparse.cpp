// The MoE layer's path for a sparse plan (token-expert assignments; every router but Soft MoE's):
// capacity and drops, dispatch by gathering each expert's tokens, one product per expert
// segment, and the gate-weighted combine by token (moe_layer.h); backward replays it in reverse
// and hands the gate gradients to the router's slots. The dense path is in moe_dense.cpp.
#include <algorithm>

#include "model/moe_layer.h"
#include "routing/capacity.h"

namespace moe {

void MoeLayer::route_host_capacity(Backend& be, int T, const Pass& p) {
    DropContext drop{min_capacity_, seed_, p.noise_key, nullptr};
    if (drop_policy_ == DropPolicy::priority) {
        // Batch-Prioritized Routing: a token's priority is its top-1 router probability
        const float* probs = state_.probs.data();
        for (int t = 0; t < T; ++t)
            priority_[size_t(t)] =
                *std::max_element(probs + size_t(t) * N_, probs + size_t(t + 1) * N_);
        drop.priority = priority_.data();
    }
    capacity_apply(plan_, p.capacity_factor, K_, drop_policy_, scratch_, drop);
    plan_index_by_token(plan_, scratch_);

    const int A = plan_.assignments();
    pd_.d_token = upload(be, pd_.token, plan_.token.data(), size_t(A));
    pd_.d_gate = upload(be, pd_.gate, plan_.gate.data(), size_t(A));
    pd_.d_tok_offsets = upload(be, pd_.tok_offsets, plan_.tok_offsets.data(), size_t(T) + 1);
    pd_.d_tok_assign = upload(be, pd_.tok_assign, plan_.tok_assign.data(), size_t(A));
}

void MoeLayer::forward_sparse(Backend& be, ParamStore& ps, float* y, const float* x, int T,
                              const Pass& p) {
    // Capacity, the by-token index and the plan's upload (the device path built its plan with
    // the backend's ops: moe_device.cpp).
    if (!last_device_) route_host_capacity(be, T, p);
    // Dispatch: tokens grouped by expert, then one product per expert segment.
    const int A = plan_.assignments();
    const int* off = plan_.offsets.data();  // host memory (backend.h)
    be.gather_rows(xd_.data(), x, pd_.d_token, A, D_);
    if (patch_) {
        patch_forward(be, ps, A, off);
        be.combine_by_token(y, yd_.data(), pd_.d_tok_offsets, pd_.d_tok_assign, pd_.d_gate, T,
                            Dout_, false);
        return;
    }
    // The experts: pre = Xd W1 + b1, h = act(pre), Yd = h W2 + b2, segment by segment.
    be.expert_ffn_forward(yd_.data(), h_.data(), pre_.data(), xd_.data(), ps.p(w1), ps.p(b1),
                          ps.p(w2), ps.p(b2), off, ffn_shape());
    // Combine: gate-weighted sum of each token's assignments, by token.
    be.combine_by_token(y, yd_.data(), pd_.d_tok_offsets, pd_.d_tok_assign, pd_.d_gate, T, D_,
                        false);
}

void MoeLayer::backward_sparse(Backend& be, ParamStore& ps, float* dx, const float* dy, int T) {
    const int A = plan_.assignments();
    const int* off = plan_.offsets.data();
    const int* tok_off = pd_.d_tok_offsets;
    const int* tok_assign = pd_.d_tok_assign;
    // The activation gradients are written over the forward workspaces as these die, so that
    // backward allocates nothing of its own (the ops' aliasing rules are in backend.h):
    //   yd_   read by combine_by_token_backward for the gate gradients, which writes dY over it
    //   h_    read by the W2 weight gradient, then holds dh
    //   pre_  read by act_backward, which writes dpre over it in place
    //   xd_   read by the W1 weight gradient, then holds dXd
    // Combine backward: dY and d gate of each assignment.
    float* dyd = yd_.data();
    be.combine_by_token_backward(dyd, dgate_.dev(), dy, yd_.data(), tok_off, tok_assign, pd_.d_gate,
                                 T, Dout_);
    if (!last_device_) dgate_.down(be, size_t(A));  // the gate gradients go to the host router
    if (patch_) {
        patch_backward(be, ps, A);  // dXd into xd_
        be.combine_by_token(dx, xd_.data(), tok_off, tok_assign, nullptr, T, D_, false);
        slot_grads(be);
        return;
    }
    // Experts backward, per segment; dh, dpre and dXd overwrite h, pre and Xd as these die.
    float* dxd = xd_.data();
    be.expert_ffn_backward(dxd, pre_.data(), h_.data(), ps.g(w1), ps.g(b1), ps.g(w2), ps.g(b2), dyd,
                           xd_.data(), h_.data(), pre_.data(), ps.p(w1), ps.p(w2), off,
                           ffn_shape());
    // Scatter back to tokens: dx[t] = sum of its assignments' dXd, in the by-token order.
    be.combine_by_token(dx, dxd, tok_off, tok_assign, nullptr, T, D_, false);
    slot_grads(be);
}

void MoeLayer::slot_grads(Backend& be) {
    if (last_device_)  // the device routing path: the op, on the backend's memory
        be.gate_grad_to_slots(dv_.dslot.data(), dgate_.dev(), dv_.slot.data(), dv_.offsets.data(),
                              N_, state_.R);
    else
        gate_grad_to_slots(plan_, dgate_.host(), dslot_task_.data(), size_t(state_.R));
}

}  // namespace moe
