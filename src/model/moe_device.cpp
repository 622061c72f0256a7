// The MoE layer's device routing path (moe_layer.h, routes_on_device): the top-k router with
// softmax scores, the plan, capacity, the Switch loss and the z-loss and the router backward as
// backend ops, on the backend's memory. Each op's CPU implementation is the host code the host
// path runs (backend/routing_host.h), so on the CPU backend this path gives the host path's bits.
#include <algorithm>

#include "backend/check.h"
#include "backend/routing_host.h"
#include "model/moe_layer.h"
#include "routing/capacity.h"

namespace moe {

void MoeLayer::reserve_device(int T_max, size_t A) {
    Backend* be = dv_.be;
    const size_t TN = size_t(T_max) * N_, R = size_t(T_max) * K_;
    MOESIM_CHECK(A == R, "the device path's top-k plan holds T k assignments");
    dv_.probs.allocate(be, TN);
    dv_.dprobs.allocate(be, TN);
    dv_.sel.allocate(be, R);
    dv_.sel_gate.allocate(be, R);
    dv_.dslot.allocate(be, R);
    dv_.offsets.allocate(be, size_t(N_) + 1);
    dv_.slot.allocate(be, R);
    dv_.routed.allocate(be, size_t(N_));
    dv_.dropped.allocate(be, size_t(N_));
    dv_.groups.allocate(be, size_t(T_max));
    dv_.lse.allocate(be, size_t(T_max));
    dv_.colsum.allocate(be, size_t(N_));
    dv_.losses.allocate(be, 2);
    dv_.interval.allocate(be, size_t(N_));
    dv_.lse_host.resize(size_t(T_max));
    dv_.colsum_host.resize(size_t(N_));
    dv_.routed_host.resize(size_t(N_));
    // pd_ (allocated by reserve on such a backend) holds the plan's token, gate and by-token
    // index.
}

// softmax -> top-k -> plan -> capacity -> by-token index, as ops. The plan's segment offsets come
// to the host (the grouped products take host offsets), and the host plan keeps its sizes.
void MoeLayer::route_device(Backend& be, int T, const Pass& p) {
    const int N = N_, K = K_, R = T * K_;
    float* probs = dv_.probs.data();
    be.softmax_rows(probs, logits_.dev(), T, N, L_);
    be.topk_rows(dv_.sel.data(), dv_.sel_gate.data(), probs, nullptr, T, N, K, normalize_, scale_);
    int* off = dv_.offsets.data();
    int* token = pd_.token.data();
    float* gate = pd_.gate.data();
    int* slot = dv_.slot.data();
    be.plan_build(off, token, gate, slot, dv_.routed.data(), dv_.sel.data(), dv_.sel_gate.data(),
                  nullptr, R, K, N);
    int64_t C = capacity_of(p.capacity_factor, T, K, N);
    if (C > 0) C = std::max<int64_t>(C, min_capacity_);
    if (C == 0)
        be.fill_zero(dv_.dropped.data(), size_t(N) * sizeof(int));
    else if (drop_policy_ == DropPolicy::position)
        be.capacity_position(off, token, gate, slot, dv_.dropped.data(), N, C, R);
    else
        be.capacity_score(off, token, gate, slot, dv_.dropped.data(), N, C, R);
    be.plan_index_by_token(pd_.tok_offsets.data(), pd_.tok_assign.data(), token, slot, off, N, T,
                           R);
    // The host plan: its sizes and segment offsets (backend.h: host offsets for the grouped ops).
    plan_.kind = PlanKind::sparse;
    plan_.T = T;
    plan_.N = N;
    plan_.capacity = C;
    plan_.weighted = false;
    be.to_host(plan_.offsets.data(), off, (size_t(N) + 1) * sizeof(int));
    plan_.A = plan_.offsets[size_t(N)];
    state_.T = T;
    state_.R = R;
    pd_.d_token = token;
    pd_.d_gate = gate;
    pd_.d_tok_offsets = pd_.tok_offsets.data();
    pd_.d_tok_assign = pd_.tok_assign.data();
}

// The Switch loss (balance.loss switch; routing/balancers/switch.cpp) and the z-loss (z_loss.cpp)
// from their ops' reductions: the column sums of p and the routed counts (N each) and the
// log-sum-exps (T) come to the host for the loss values, added in the host losses' order. The
// Switch loss's gradient w.r.t. p is accumulated now (dprobs); the z-loss's goes to the logits
// in backward.
void MoeLayer::losses_device(Backend& be, int T) {
    const int N = N_;
    be.fill_zero(dv_.dprobs.data(), size_t(T) * N * sizeof(float));
    aux_ = weighted_aux_ = 0.0;
    if (loss_kind_ == BalanceLoss::switch_loss) {
        const float coef = float(balance_.alpha);
        be.column_sums(dv_.colsum.data(), dv_.probs.data(), T, N);
        be.to_host(dv_.colsum_host.data(), dv_.colsum.data(), size_t(N) * sizeof(double));
        be.to_host(dv_.routed_host.data(), dv_.routed.data(), size_t(N) * sizeof(int));
        be.switch_loss_grad(dv_.dprobs.data(), dv_.routed.data(), T, N, K_, coef);
        aux_ = host_switch_loss_value(dv_.routed_host.data(), dv_.colsum_host.data(), T, N, K_);
        weighted_aux_ = balance_.alpha * aux_;
    }
    be.logsumexp_rows(dv_.lse.data(), logits_.dev(), T, N, L_);
    be.to_host(dv_.lse_host.data(), dv_.lse.data(), size_t(T) * sizeof(double));
    z_ = host_add_squares(0.0, dv_.lse_host.data(), T) / T;
    weighted_z_ = balance_.z_loss * z_;
}

// The top-k router's backward (routing/routers/topk.cpp, softmax scores) as ops: d = dL/dp, the
// gates' part added at the selected experts, then the softmax backward; the z-loss's gradient
// added after (the host path adds it the same way).
void MoeLayer::router_backward_device(Backend& be, ParamStore& ps, const float* x, int T,
                                      bool router_grad_parts) {
    const int N = N_, K = K_;
    const size_t TN = size_t(T) * N;
    const float* probs = dv_.probs.data();
    const float zc = float(balance_.z_loss);
    auto logit_grad = [&](float* d, const float* d_probs, const float* d_slot) {
        if (d_probs)
            be.copy(d, d_probs, TN * sizeof(float));
        else
            be.fill_zero(d, TN * sizeof(float));
        if (d_slot)
            be.topk_rows_backward(d, probs, dv_.sel.data(), d_slot, T, N, K, normalize_, scale_,
                                  L_);
        be.softmax_rows_backward(d, probs, T, N, L_);
    };
    if (router_grad_parts) {
        // Statistics (gradient interference): the task part, and the auxiliary part (the Switch
        // loss's dp and the z-loss), apart.
        logit_grad(dlog_.dev(), nullptr, dv_.dslot.data());
        logit_grad(dlog_aux_.dev(), dv_.dprobs.data(), nullptr);
        if (zc > 0.0f)
            be.z_loss_grad(dlog_aux_.dev(), logits_.dev(), dv_.lse.data(), T, N, L_, L_, zc);
        head_.param_grad(be, ps, gw_task_.dev(), dlog_.dev(), x, T);
        head_.param_grad(be, ps, gw_aux_.dev(), dlog_aux_.dev(), x, T);
        gw_task_.down(be, gw_task_.size());
        gw_aux_.down(be, gw_aux_.size());
    }
    logit_grad(dlog_.dev(), dv_.dprobs.data(), dv_.dslot.data());
    if (zc > 0.0f) be.z_loss_grad(dlog_.dev(), logits_.dev(), dv_.lse.data(), T, N, L_, L_, zc);
}

void MoeLayer::sync_host(Backend& be) {
    if (!last_device_) return;
    const int T = T_last_, N = N_, A = plan_.A, R = T * K_;
    be.to_host(plan_.offsets.data(), dv_.offsets.data(), (size_t(N) + 1) * sizeof(int));
    be.to_host(plan_.token.data(), pd_.token.data(), size_t(A) * sizeof(int));
    be.to_host(plan_.gate.data(), pd_.gate.data(), size_t(A) * sizeof(float));
    be.to_host(plan_.slot.data(), dv_.slot.data(), size_t(A) * sizeof(int));
    be.to_host(plan_.routed.data(), dv_.routed.data(), size_t(N) * sizeof(int));
    be.to_host(plan_.dropped.data(), dv_.dropped.data(), size_t(N) * sizeof(int));
    be.to_host(plan_.tok_offsets.data(), pd_.tok_offsets.data(), (size_t(T) + 1) * sizeof(int));
    be.to_host(plan_.tok_assign.data(), pd_.tok_assign.data(), size_t(A) * sizeof(int));
    be.to_host(state_.probs.data(), dv_.probs.data(), size_t(T) * N * sizeof(float));
    be.to_host(state_.sel.data(), dv_.sel.data(), size_t(R) * sizeof(int));
    be.to_host(state_.sel_gate.data(), dv_.sel_gate.data(), size_t(R) * sizeof(float));
    logits_.down(be, size_t(T) * L_);
    std::copy_n(logits_.host(), size_t(T) * N, state_.noisy.data());
}

void MoeLayer::ensure_window(Backend& be, int max_groups) {
    if (dv_.max_groups == max_groups) return;
    dv_.win_counts.allocate(&be, Backend::WindowSummary::counts_size(N_, max_groups));
    dv_.win_sums.allocate(&be, Backend::WindowSummary::sums_size(N_));
    dv_.max_groups = max_groups;
}

void MoeLayer::observe_window(Backend& be, const int* groups, int num_groups, int max_groups) {
    MOESIM_CHECK(last_device_, "observe_window after a host-path forward");
    ensure_window(be, max_groups);
    const int T = T_last_;
    const int* g = nullptr;
    if (groups != nullptr) {
        be.to_device(dv_.groups.data(), groups, size_t(T) * sizeof(int));
        g = dv_.groups.data();
    }
    const double losses[2] = {aux_, z_};
    be.to_device(dv_.losses.data(), losses, sizeof losses);
    be.window_observe(dv_.win_counts.data(), dv_.win_sums.data(), dv_.interval.data(),
                      dv_.routed.data(), dv_.dropped.data(), pd_.tok_offsets.data(),
                      dv_.probs.data(), L_ == N_ ? logits_.dev() : nullptr, g, num_groups,
                      dv_.losses.data(), T, N_, max_groups);
}

void MoeLayer::window_download(Backend&, std::vector<int64_t>& counts, std::vector<double>& sums) {
    MOESIM_CHECK(dv_.max_groups >= 0, "no window summary yet");
    counts = dv_.win_counts.to_vector();
    sums = dv_.win_sums.to_vector();  // the buffers copy through their own backend
}

void MoeLayer::window_upload(Backend& be, int max_groups, std::span<const int64_t> counts,
                             std::span<const double> sums) {
    ensure_window(be, max_groups);
    MOESIM_CHECK(counts.size() == dv_.win_counts.size() && sums.size() == dv_.win_sums.size(),
                 "a window summary of another shape");
    dv_.win_counts.assign_from(counts.data());
    dv_.win_sums.assign_from(sums.data());
}

void MoeLayer::window_reset(Backend& be) {
    if (dv_.max_groups < 0) return;
    be.fill_zero(dv_.win_counts.data(), dv_.win_counts.size() * sizeof(int64_t));
    be.fill_zero(dv_.win_sums.data(), dv_.win_sums.size() * sizeof(double));
}

void MoeLayer::interval_download(Backend& be, std::vector<int64_t>& routed) {
    routed = dv_.interval.to_vector();
    be.fill_zero(dv_.interval.data(), dv_.interval.size() * sizeof(int64_t));
}

}  // namespace moe
