// A Mixture-of-Experts FFN layer (Shazeer et al. 2017; Fedus et al. 2021; DeepSeekMoE 2024):
//
//   logits = head(x)                       (T, L)    router head (router_head.h): x Wr, no
//                                                    bias, or X-MoE's cosine; L = logit_width
//   plan   = route(logits) + capacity      RoutingPlan per assignment (routing_plan.h)
//   Xd     = x[token[a]]                   (A, D)    tokens grouped by expert
//   Y_e    = act(Xd_e W1_e + b1_e) W2_e + b2_e       one matrix product per expert segment
//   y[t]   = sum_{a of token t} gate[a] * Y[a]  + shared(x)    (the plan's by-token index)
//            (experts.shared_gate: sigmoid multiplies shared(x)[t] by sigmoid(x[t] . w_g), one
//            learned (D) vector per layer: Qwen1.5-MoE / Megatron's gated shared expert)
//
// Compute is O(A) expert rows (A <= T k for top-k), never O(T N), except for the dense routers:
// soft (A = T N by definition) and soft_slots, whose dense plan runs the dense path
// (moe_dense.cpp: dispatch Xs = Dᵀ x and combine y = C Ys as matrix products, N*S slot rows). A dropped assignment
// contributes nothing; a token with every assignment dropped gets y[t] = shared(x) only (the
// residual carries it).
//
// Losses (METRICS.md): the balancing losses (balance_losses) and the z-loss are computed in
// forward from the plan and the router state; in training their gradients are kept for backward.
// The auxiliary-loss-free bias b is this layer's balancing state: after each optimizer step,
// after_optimizer_step() moves it by the step's routed counts.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/buffer.h"
#include "backend/serialize.h"
#include "config/config.h"
#include "model/layers/ffn.h"
#include "model/layers/router_head.h"
#include "model/params.h"
#include "routing/router.h"

namespace moe {

class MoeLayer {
public:
    // block: this layer's block index of `blocks` (keys the gating noise per step and layer).
    // in_dim: the width of x (0: model.d_model); the output y has the same width with ffn experts
    // and 2 (the class scores) with patch experts (patch_expert.h).
    MoeLayer(const Config& cfg, ParamStore& ps, const std::string& name, int block, int blocks,
             int in_dim = 0);
    // Workspaces for up to T_max tokens in be's memory (null: host memory).
    void reserve(int T_max, Backend* be = nullptr);

    // y (T, out_dim()) from x (T, D). The losses are in aux_loss(), z_loss_value() (before their
    // coefficients) and weighted_loss() (with them).
    void forward(Backend& be, ParamStore& ps, float* y, const float* x, int T, const Pass& pass);
    // dx (T, D) overwritten from dy (T, out_dim()) and the x of forward. With router_grad_parts, the
    // router-weight gradients of the task loss and of the auxiliary losses are also computed
    // apart, for the statistics (router_grad_task / _aux); the parameter gradient is the same
    // single product of the summed logit gradients either way, so statistics never change the
    // arithmetic of training. Backward writes its activation gradients over the forward
    // workspaces (see backward), so it runs once per training forward; the plan, the router
    // state, the logits and the losses stay readable.
    void backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x, int T,
                  bool router_grad_parts = false);
    // The balancing bias update of the last training forward (bias_rate > 0; else nothing), by
    // balance.bias_rule at the rate of that forward's step (bias_rate_at).
    void after_optimizer_step();

    const RoutingPlan& plan() const { return plan_; }
    const RouterState& router_state() const { return state_; }
    // The router logits (T, logit_width()); the statistics read them as (T, N) expert logits
    // only when the widths agree (expert_logits(): null otherwise).
    // (Host memory: the routers and the statistics read them on the host.)
    const float* logits() const { return logits_.host(); }
    const float* expert_logits() const { return L_ == N_ ? logits_.host() : nullptr; }
    int logit_width() const { return L_; }
    double aux_loss() const { return aux_; }  // balance.loss before balance.alpha (0 with none)
    double z_loss_value() const { return z_; }
    // alpha * aux plus every balance.losses.<name> with its coefficient (0 with none of them)
    double weighted_aux() const { return weighted_aux_; }
    double weighted_z() const { return weighted_z_; }  // z_coef * z
    const float* bias() const { return bias_.data(); }
    int experts() const { return N_; }
    int in_dim() const { return D_; }
    int out_dim() const { return Dout_; }
    // Router-weight gradients of the last backward with router_grad_parts: the gradient of the
    // router head's parameters (RouterHead::param_grad; the linear head: Wr, (D, L)) each.
    // (Host memory.)
    std::span<const float> router_grad_task() const { return {gw_task_.host(), gw_task_.size()}; }
    std::span<const float> router_grad_aux() const { return {gw_aux_.host(), gw_aux_.size()}; }

    // ---- The device routing path (docs/cuda.md): on a backend whose memory is not host memory,
    // a training forward of router.type topk with softmax scores, no gating noise, no balancing
    // bias (balance.bias_rate 0), balance.loss switch or none (no balance.losses), any z-loss and
    // capacity none, position or score routes through the backend's routing ops: the logits,
    // probabilities, selections and plan stay in the backend's memory (only the plan's segment
    // offsets, the Switch loss's N column sums and counts and the T log-sum-exps come to the
    // host, for the grouped products and the loss values), the losses' gradients and the router
    // backward run as ops, and the step's statistics go to a window summary in the backend's
    // memory (observe_window). Every other configuration, and every evaluation pass, runs the
    // host path. plan(), router_state() and logits() are then those of the last host-path pass
    // until sync_host().
    bool routes_on_device() const { return device_route_; }
    // Copies the last device-path forward's plan, probabilities and logits to their host copies
    // (plan(), router_state().probs, logits()); nothing after a host-path forward.
    void sync_host(Backend& be);
    // Adds the last training forward (device path) to the layer's window summary in the backend's
    // memory (backend.h, window_observe): groups (T) host ground-truth groups or null, num_groups
    // of them; max_groups: the window's group rows (LayerWindow's). Also counts the routed
    // assignments into the collapse interval.
    void observe_window(Backend& be, const int* groups, int num_groups, int max_groups);
    // The window summary (Backend::WindowSummary's layout for N and max_groups): downloaded
    // (for LayerWindow::set_summary), uploaded (a resumed run's open window) and zeroed (a new
    // log window).
    void window_download(Backend& be, std::vector<int64_t>& counts, std::vector<double>& sums);
    void window_upload(Backend& be, int max_groups, std::span<const int64_t> counts,
                       std::span<const double> sums);
    void window_reset(Backend& be);
    // The routed counts (N) since the last call (the collapse tracker's interval), then zeroed.
    void interval_download(Backend& be, std::vector<int64_t>& routed);

    // The layer's own training state besides its parameters: the balancing bias.
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

    // parameter tensors; router_w: the router head's input map (linear: Wr, cosine: Wp)
    int router_w = -1, w1 = -1, b1 = -1, w2 = -1, b2 = -1;
    int shared_gate = -1;  // the shared experts' gate vector w_g (D) (experts.shared_gate)

private:
    // The token-expert path of a sparse plan: capacity, dispatch, experts, combine (forward);
    // combine, experts and scatter backward, then the gate gradients into dslot_task_.
    void forward_sparse(Backend& be, ParamStore& ps, float* y, const float* x, int T,
                        const Pass& pass);
    void backward_sparse(Backend& be, ParamStore& ps, float* dx, const float* dy, int T);
    // The slot path of a dense plan (Soft MoE; model/moe_dense.cpp): dispatch and combine as
    // matrix products with the plan's weights, the experts over their slot rows; backward writes
    // dx and the router's weight gradients [dD | dC] into dslot_task_.
    void reserve_dense(int T_max, Backend* be);
    void forward_dense(Backend& be, ParamStore& ps, float* y, const float* x, int T);
    void backward_dense(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x,
                        int T);

    // The patch experts' forward and backward over the dispatched rows (patch_expert.cpp).
    void patch_forward(Backend& be, ParamStore& ps, int A, const int* off);
    void patch_backward(Backend& be, ParamStore& ps, int A);

    // The device routing path (routes_on_device): its forward routing and losses, its backward.
    void route_device(Backend& be, int T, const Pass& p);
    void losses_device(Backend& be, int T);
    void router_backward_device(Backend& be, ParamStore& ps, const float* x, int T,
                                bool router_grad_parts);
    // The host path's router backward: the logit gradients into dlog_ (uploaded).
    void router_backward_host(Backend& be, ParamStore& ps, const float* x, int T,
                              bool router_grad_parts);
    void reserve_device(int T_max, size_t A);
    // The host path's capacity, by-token index and plan upload (forward_sparse).
    void route_host_capacity(Backend& be, int T, const Pass& p);
    // The gate gradients of the last backward moved to the router's slots (dslot_task_, or the
    // device path's dv_.dslot).
    void slot_grads(Backend& be);
    void ensure_window(Backend& be, int max_groups);
    Backend::FfnShape ffn_shape() const { return {N_, D_, H_, H1_, act_}; }

    int D_, Dout_, N_, K_, H_, H1_;
    // experts.kind: patch: P patches of dimension pdim_, 2 pJ_ channels, the activation
    bool patch_ = false;
    int P_ = 1, pdim_ = 0, pJ_ = 0;
    PatchActivation pact_ = PatchActivation::cubic;
    std::vector<int> poff_;  // (N + 1) the segment offsets times P: the rows of (A P, d)
    int block_, blocks_;
    uint64_t seed_;
    Activation act_;
    BalanceConfig balance_;
    int64_t steps_;     // train.steps: the bias schedule's length
    int64_t step_ = 0;  // the step of the last training forward
    DropPolicy drop_policy_;
    int min_capacity_;   // capacity.min
    double max_factor_;  // the largest capacity factor of a pass (training or evaluation)
    std::unique_ptr<Router> router_;
    int L_;  // router logits per token: router_->logit_width(N)
    RouterHead head_;
    std::unique_ptr<Ffn> shared_;
    RouterState state_;
    RoutingPlan plan_;
    std::vector<float> bias_;  // (N) balancing bias b[i]
    std::vector<int> scratch_;
    std::vector<float> priority_;  // (T_max) the token priorities of the priority drop policy
    std::vector<double> dscratch_;
    // Memory: the layer's workspaces are the backend's (buffer.h); on the host path the routers,
    // the balancing losses and the router backward run on the host (the device routing path's
    // buffers are dv_, below), so the router logits, the gate gradients
    // and the logit gradients are Mirrors (a host copy on a device backend), and the routing
    // plan's arrays are uploaded after routing (plan_dev_: the plan itself on a host backend).
    // Forward workspaces, (A_max, width) with A_max = the router's max_assignments(T_max, N,
    // max_factor_).
    // Backward reuses them once dead: yd_ then holds dY, h_ dh, pre_ dpre and xd_ dXd.
    Mirror<float> logits_;                     // (T_max, L)
    Buf<float> xd_, pre_, h_, yd_, shared_y_;  // forward
    // The shared experts' gate: sgate_ (T_max) the gates g_t of the last forward, dsgate_ their
    // logit gradients, shared_dy_ (T_max, D) the gradient of the ungated shared output.
    Buf<float> sgate_, dsgate_, shared_dy_;
    // The plan's arrays in the backend's memory (filled by upload(): unused on a host backend).
    struct PlanOnDevice {
        Buf<int> token, tok_offsets, tok_assign;
        Buf<float> gate, dispatch, combine;
        const int *d_token = nullptr, *d_tok_offsets = nullptr, *d_tok_assign = nullptr;
        const float *d_gate = nullptr, *d_dispatch = nullptr, *d_combine = nullptr;
    } pd_;
    Mirror<float> dgate_, dlog_, dlog_aux_, gw_task_, gw_aux_;
    Buf<float> dslot_dense_;  // (2 T_max A) the dense path's [dDw | dCw] (backward_dense)
    std::vector<float> dslot_task_, dslot_aux_, dprobs_, dlog_direct_;  // backward, host
    double aux_ = 0.0, z_ = 0.0, weighted_aux_ = 0.0, weighted_z_ = 0.0;
    // The device routing path: whether this layer's configuration runs it on its backend
    // (routes_on_device), and whether the last forward did (last_device_). Its buffers, in the
    // backend's memory: probabilities (T_max, N), selections and their gates (T_max K), the
    // plan's offsets, slots, routed and dropped counts (token, gate and the by-token index are
    // pd_'s), the loss gradients w.r.t. p (T_max, N) and the slots (T_max K), the log-sum-exps
    // (T_max), the Switch loss's column sums (N); the window summary and collapse interval
    // (observe_window) with the groups (T_max) and losses (2) of a step.
    bool device_ok_ = false, device_route_ = false, last_device_ = false;
    bool normalize_ = true;
    float scale_ = 1.0f;
    BalanceLoss loss_kind_ = BalanceLoss::none;
    int T_last_ = 0;
    struct DeviceRouting {
        Buf<float> probs, sel_gate, dprobs, dslot;
        Buf<int> sel, offsets, slot, routed, dropped, groups;
        Buf<double> lse, colsum, losses, win_sums;
        Buf<int64_t> win_counts, interval;
        int max_groups = -1;
        Backend* be = nullptr;
        std::vector<double> lse_host, colsum_host;
        std::vector<int> routed_host;
    } dv_;

    bool training_ = false;
};

}  // namespace moe
