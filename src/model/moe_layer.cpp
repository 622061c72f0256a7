#include "model/moe_layer.h"

#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "routing/balancer.h"
#include "routing/capacity.h"

namespace moe {

MoeLayer::MoeLayer(const Config& cfg, ParamStore& ps, const std::string& name, int block,
                   int blocks, int in_dim)
    : D_(in_dim > 0 ? in_dim : cfg.model.d_model),
      Dout_(cfg.experts.kind == ExpertKind::patch ? 2 : D_),
      N_(cfg.experts.count),
      // assignments per token that the capacity and the Switch loss are sized for: router.k,
      // times the branches a token picks for the hierarchical router
      K_(cfg.router.k *
         (cfg.router.type == RouterType::hierarchical ? cfg.router.hierarchical.k_branches : 1)),
      H_(cfg.experts.d_ff),
      H1_(cfg.experts.activation == Activation::swiglu ? 2 * cfg.experts.d_ff : cfg.experts.d_ff),
      block_(block),
      blocks_(blocks),
      seed_(cfg.seed),
      act_(cfg.experts.activation),
      balance_(cfg.balance),
      steps_(cfg.train.steps),
      drop_policy_(cfg.capacity.drop_policy),
      min_capacity_(cfg.capacity.min),
      max_factor_(std::max(cfg.capacity.factor, cfg.capacity.eval_factor)),
      router_(router_create(cfg.router)),
      L_(router_->logit_width(N_)) {
    // The device routing path's configurations (routes_on_device).
    const RouterConfig& rc = cfg.router;
    const BalanceConfig& bc = cfg.balance;
    normalize_ = gates_normalized(rc);
    scale_ = float(rc.scale);
    loss_kind_ = bc.loss;
    device_ok_ = rc.type == RouterType::topk && rc.score == ScoreFn::softmax && rc.noise == 0.0 &&
                 rc.topk.noise == TopkNoise::fixed && rc.topk.groups == 1 &&
                 rc.topk.second_expert == SecondExpert::always && bc.bias_rate == 0.0 &&
                 (bc.loss == BalanceLoss::none || bc.loss == BalanceLoss::switch_loss) &&
                 !(bc.losses.switch_loss > 0.0) && !(bc.losses.gshard > 0.0) &&
                 !(bc.losses.shazeer > 0.0) &&
                 (cfg.capacity.factor == 0.0 || cfg.capacity.drop_policy == DropPolicy::position ||
                  cfg.capacity.drop_policy == DropPolicy::score);
    head_.declare(cfg.router, ps, name, D_, L_, seed_,
                  cfg.router.patch_tied ? cfg.data.patch_clusters.patches : 1);
    router_w = head_.input_tensor();
    if (cfg.experts.kind == ExpertKind::patch) {
        // Chen et al. 2022's two-layer CNN per expert: 2J filters (d) with bias, shared by the P
        // patches; their init is PyTorch's Conv1d default (U(+-1/sqrt(d)), std 1/sqrt(3d)) in
        // variance, as a normal, times experts.patch.init_scale.
        patch_ = true;
        P_ = cfg.data.patch_clusters.patches;
        pdim_ = cfg.data.patch_clusters.dim;
        pJ_ = cfg.experts.patch.channels;
        pact_ = cfg.experts.patch.activation;
        MOESIM_CHECK(P_ * pdim_ == D_, "patch experts need an input of P * d");
        H_ = H1_ = P_ * 2 * pJ_;  // pre-activations per row: (P, 2J)
        const float sd = float(cfg.experts.patch.init_scale / std::sqrt(3.0 * pdim_));
        w1 = ps.add(name + ".experts.w1", size_t(N_) * pdim_ * 2 * pJ_, Init::normal, sd);
        b1 = ps.add(name + ".experts.b1", size_t(N_) * 2 * pJ_, Init::normal, sd);
        poff_.resize(size_t(N_) + 1);
        bias_.assign(N_, 0.0f);
        return;
    }
    w1 = ps.add(name + ".experts.w1", size_t(N_) * D_ * H1_, Init::normal,
                1.0f / std::sqrt(float(D_)));
    b1 = ps.add(name + ".experts.b1", size_t(N_) * H1_, Init::zeros);
    w2 = ps.add(name + ".experts.w2", size_t(N_) * H_ * D_, Init::normal,
                1.0f / std::sqrt(float(H_)));
    b2 = ps.add(name + ".experts.b2", size_t(N_) * D_, Init::zeros);
    if (cfg.experts.shared > 0) {
        shared_ = std::make_unique<Ffn>();
        shared_->declare(ps, name + ".shared", D_, cfg.experts.shared * H_, act_);
        // The shared experts' gate vector w_g (D): zeros, so the gate starts at 1/2 everywhere.
        if (cfg.experts.shared_gate == SharedGate::sigmoid)
            shared_gate = ps.add(name + ".shared.gate", size_t(D_), Init::zeros);
    }
    bias_.assign(N_, 0.0f);
}

void MoeLayer::reserve(int T_max, Backend* be) {
    const size_t A = router_->max_assignments(T_max, N_, max_factor_), TN = size_t(T_max) * N_,
                 TL = size_t(T_max) * L_;
    router_->reserve(state_, T_max, N_, max_factor_);
    plan_.reserve(T_max, N_, A);
    scratch_.reserve(std::max(2 * A, size_t(T_max)) + N_ + 1);
    if (drop_policy_ == DropPolicy::priority) priority_.resize(size_t(T_max));
    dscratch_.reserve(4 * size_t(N_));
    logits_.allocate(be, TL);
    xd_.allocate(be, A * D_);
    pre_.allocate(be, A * H1_);
    if (!patch_) h_.allocate(be, A * H_);
    yd_.allocate(be, A * Dout_);
    dgate_.allocate(be, A);
    if (be && !be->host_memory()) {
        pd_.token.allocate(be, A);
        pd_.gate.allocate(be, A);
        pd_.tok_offsets.allocate(be, size_t(T_max) + 1);
        pd_.tok_assign.allocate(be, A);
    }
    dslot_task_.resize(A);
    dslot_aux_.resize(A);
    dprobs_.resize(TN);
    dlog_.allocate(be, TL);
    dlog_aux_.allocate(be, TL);
    dlog_direct_.resize(TL);
    head_.reserve(T_max, be);
    gw_task_.allocate(be, head_.param_count());
    gw_aux_.allocate(be, head_.param_count());
    if (shared_) {
        shared_->reserve(T_max, be);
        shared_y_.allocate(be, size_t(T_max) * D_);
        if (shared_gate >= 0) {
            shared_dy_.allocate(be, size_t(T_max) * D_);
            sgate_.allocate(be, size_t(T_max));
            dsgate_.allocate(be, size_t(T_max));
        }
    }
    if (router_->plan_kind() == PlanKind::dense) reserve_dense(T_max, be);
    device_route_ = device_ok_ && be != nullptr && !be->host_memory();
    if (device_route_) {
        dv_.be = be;
        reserve_device(T_max, A);
    }
}

namespace {
void host_add(float* y, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}
}  // namespace

void MoeLayer::forward(Backend& be, ParamStore& ps, float* y, const float* x, int T,
                       const Pass& pass) {
    MOESIM_CHECK(size_t(T) * L_ <= logits_.size(), "more tokens than the layer was reserved for");
    training_ = pass.training;
    Pass p = pass;
    p.noise_key = uint64_t(pass.step) * uint64_t(blocks_) + uint64_t(block_);
    head_.forward(be, ps, logits_.dev(), x, T, pass.training, p.noise_key);
    last_device_ = device_route_ && pass.training;
    T_last_ = T;
    if (last_device_) {
        route_device(be, T, p);
    } else {
        logits_.down(be, size_t(T) * L_);  // the routers run on the host
        router_->route(logits_.host(), T, balance_.bias_rate > 0.0 ? bias_.data() : nullptr, p,
                       seed_, state_, plan_);
    }
    if (plan_.kind == PlanKind::dense)
        forward_dense(be, ps, y, x, T);
    else
        forward_sparse(be, ps, y, x, T, p);
    if (shared_) {
        shared_->forward(be, ps, shared_y_.data(), x, T);
        if (shared_gate >= 0) {
            // y[t] += sigmoid(x[t] . w_g) * shared(x)[t]   (Qwen-MoE's gated shared expert)
            be.gemm(sgate_.data(), x, ps.p(shared_gate), T, 1, D_, false, false, 0.0f);
            be.gate_rows_forward(y, sgate_.data(), shared_y_.data(), T, D_);
        } else {
            be.add(y, shared_y_.data(), size_t(T) * D_);
        }
    }

    // Balancing losses; in training their gradients are accumulated now for backward.
    if (training_) step_ = pass.step;  // the bias schedule's step (after_optimizer_step)
    if (last_device_) {
        losses_device(be, T);
        return;
    }
    const size_t TN = size_t(T) * N_, TL = size_t(T) * L_;
    float* dprobs = nullptr;
    float* dslot_aux = nullptr;
    float* dlog_direct = nullptr;
    if (training_) {
        std::fill_n(dprobs_.data(), TN, 0.0f);
        std::fill_n(dslot_aux_.data(), state_.R, 0.0f);
        std::fill_n(dlog_direct_.data(), TL, 0.0f);
        dprobs = dprobs_.data();
        dslot_aux = dslot_aux_.data();
        dlog_direct = dlog_direct_.data();
    }
    const AuxLossValues aux = balance_losses(balance_, plan_, state_, logits_.host(), K_, dprobs,
                                             dslot_aux, dlog_direct, dscratch_, pass.sequence_ids);
    aux_ = aux.main;
    weighted_aux_ = aux.weighted;
    z_ = z_loss(logits_.host(), T, L_, float(balance_.z_loss),
                balance_.z_loss > 0.0 ? dlog_direct : nullptr);
    weighted_z_ = balance_.z_loss * z_;
}

void MoeLayer::router_backward_host(Backend& be, ParamStore& ps, const float* x, int T,
                                    bool router_grad_parts) {
    // Router. Its backward is linear in (d slot, d p): for training, one pass with the summed
    // slot gradients of the task and auxiliary losses, plus the auxiliary losses' direct logit
    // gradients. It runs on the host; the logit gradients then go to the backend for the head.
    const size_t TL = size_t(T) * L_, R = size_t(state_.R);
    if (router_grad_parts) {
        // Statistics (gradient interference): the two parts apart, before they are summed.
        router_->backward(state_, dslot_task_.data(), nullptr, dlog_.host());
        router_->backward(state_, dslot_aux_.data(), dprobs_.data(), dlog_aux_.host());
        host_add(dlog_aux_.host(), dlog_direct_.data(), TL);
        dlog_.up(be, TL);
        dlog_aux_.up(be, TL);
        head_.param_grad(be, ps, gw_task_.dev(), dlog_.dev(), x, T);
        head_.param_grad(be, ps, gw_aux_.dev(), dlog_aux_.dev(), x, T);
        gw_task_.down(be, gw_task_.size());
        gw_aux_.down(be, gw_aux_.size());
    }
    host_add(dslot_aux_.data(), dslot_task_.data(), R);
    router_->backward(state_, dslot_aux_.data(), dprobs_.data(), dlog_.host());
    host_add(dlog_.host(), dlog_direct_.data(), TL);
    dlog_.up(be, TL);
}

void MoeLayer::backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x,
                        int T, bool router_grad_parts) {
    if (plan_.kind == PlanKind::dense)
        backward_dense(be, ps, dx, dy, x, T);
    else
        backward_sparse(be, ps, dx, dy, T);

    if (last_device_)
        router_backward_device(be, ps, x, T, router_grad_parts);
    else
        router_backward_host(be, ps, x, T, router_grad_parts);
    head_.backward(be, ps, dx, dlog_.dev(), x, T);
    if (shared_ && shared_gate >= 0) {
        // y[t] += g_t S[t], g_t = sigmoid(a_t), a_t = x[t] . w_g: dS[t] = g_t dy[t],
        // da_t = (dy[t] . S[t]) g_t (1 - g_t); dw_g = x^T da, dx += da w_g^T.
        be.gate_rows_backward(shared_dy_.data(), dsgate_.data(), dy, shared_y_.data(),
                              sgate_.data(), T, D_);
        be.gemm(ps.g(shared_gate), x, dsgate_.data(), D_, 1, T, true, false, 1.0f);
        be.gemm(dx, dsgate_.data(), ps.p(shared_gate), T, D_, 1, false, true, 1.0f);
        shared_->backward(be, ps, dx, shared_dy_.data(), x, T, true);
    } else if (shared_) {
        shared_->backward(be, ps, dx, dy, x, T, true);
    }
}

void MoeLayer::after_optimizer_step() {
    if (balance_.bias_rate > 0.0)
        bias_update(bias_.data(), plan_.routed.data(), N_,
                    float(bias_rate_at(balance_, steps_, step_)), balance_.bias_rule);
}

void MoeLayer::save(BinaryWriter& w) const {
    w.tag("MOEL");
    w.vec(bias_);
}

void MoeLayer::load(BinaryReader& r) {
    r.tag("MOEL");
    r.vec(bias_, N_);
}

}  // namespace moe
