#include "model/moe_layer.h"

#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "routing/balancer.h"
#include "routing/capacity.h"

namespace moe {

MoeLayer::MoeLayer(const Config& cfg, ParamStore& ps, const std::string& name, int block,
                   int blocks)
    : D_(cfg.model.d_model),
      N_(cfg.experts.count),
      K_(cfg.router.k),
      H_(cfg.experts.d_ff),
      H1_(cfg.experts.activation == Activation::swiglu ? 2 * cfg.experts.d_ff : cfg.experts.d_ff),
      block_(block),
      blocks_(blocks),
      seed_(cfg.seed),
      act_(cfg.experts.activation),
      balance_(cfg.balance),
      drop_policy_(cfg.capacity.drop_policy),
      min_capacity_(cfg.capacity.min),
      max_factor_(std::max(cfg.capacity.factor, cfg.capacity.eval_factor)),
      router_(router_create(cfg.router)),
      L_(router_->logit_width(N_)) {
    head_.declare(cfg.router, ps, name, D_, L_, seed_);
    router_w = head_.input_tensor();
    w1 = ps.add(name + ".experts.w1", size_t(N_) * D_ * H1_, Init::normal,
                1.0f / std::sqrt(float(D_)));
    b1 = ps.add(name + ".experts.b1", size_t(N_) * H1_, Init::zeros);
    w2 = ps.add(name + ".experts.w2", size_t(N_) * H_ * D_, Init::normal,
                1.0f / std::sqrt(float(H_)));
    b2 = ps.add(name + ".experts.b2", size_t(N_) * D_, Init::zeros);
    if (cfg.experts.shared > 0) {
        shared_ = std::make_unique<Ffn>();
        shared_->declare(ps, name + ".shared", D_, cfg.experts.shared * H_, act_);
    }
    bias_.assign(N_, 0.0f);
}

void MoeLayer::reserve(int T_max) {
    const size_t A = router_->max_assignments(T_max, N_, max_factor_), TN = size_t(T_max) * N_,
                 TL = size_t(T_max) * L_;
    router_->reserve(state_, T_max, N_, max_factor_);
    plan_.reserve(T_max, N_, A);
    scratch_.reserve(std::max(2 * A, size_t(T_max)) + N_ + 1);
    if (drop_policy_ == DropPolicy::priority) priority_.resize(size_t(T_max));
    dscratch_.reserve(4 * size_t(N_));
    logits_.resize(TL);
    xd_.resize(A * D_);
    pre_.resize(A * H1_);
    h_.resize(A * H_);
    yd_.resize(A * D_);
    dgate_.resize(A);
    dslot_task_.resize(A);
    dslot_aux_.resize(A);
    dprobs_.resize(TN);
    dlog_.resize(TL);
    dlog_aux_.resize(TL);
    dlog_direct_.resize(TL);
    head_.reserve(T_max);
    gw_task_.resize(head_.param_count());
    gw_aux_.resize(head_.param_count());
    if (shared_) {
        shared_->reserve(T_max);
        shared_y_.resize(size_t(T_max) * D_);
    }
}

void MoeLayer::forward(Backend& be, ParamStore& ps, float* y, const float* x, int T,
                       const Pass& pass) {
    MOESIM_CHECK(size_t(T) * L_ <= logits_.size(), "more tokens than the layer was reserved for");
    training_ = pass.training;
    Pass p = pass;
    p.noise_key = uint64_t(pass.step) * uint64_t(blocks_) + uint64_t(block_);
    head_.forward(be, ps, logits_.data(), x, T, pass.training, p.noise_key);
    router_->route(logits_.data(), T, balance_.bias_rate > 0.0 ? bias_.data() : nullptr, p, seed_,
                   state_, plan_);
    DropContext drop{min_capacity_, seed_, p.noise_key, nullptr};
    if (drop_policy_ == DropPolicy::priority) {
        // Batch-Prioritized Routing: a token's priority is its top-1 router probability
        const float* probs = state_.probs.data();
        for (int t = 0; t < T; ++t)
            priority_[size_t(t)] =
                *std::max_element(probs + size_t(t) * N_, probs + size_t(t + 1) * N_);
        drop.priority = priority_.data();
    }
    capacity_apply(plan_, pass.capacity_factor, K_, drop_policy_, scratch_, drop);
    plan_index_by_token(plan_, scratch_);

    // Dispatch: tokens grouped by expert, then one product per expert segment.
    const int A = plan_.assignments();
    const int* off = plan_.offsets.data();
    be.gather_rows(xd_.data(), x, plan_.token.data(), A, D_);
    be.gemm_grouped_rows_bias(pre_.data(), xd_.data(), ps.p(w1), size_t(D_) * H1_, ps.p(b1), H1_,
                              off, N_, H1_, D_);
    be.act_forward(h_.data(), pre_.data(), A, H_, act_);
    be.gemm_grouped_rows_bias(yd_.data(), h_.data(), ps.p(w2), size_t(H_) * D_, ps.p(b2), D_, off,
                              N_, D_, H_);
    // Combine: gate-weighted sum of each token's assignments, by token.
    be.combine_by_token(y, yd_.data(), plan_.tok_offsets.data(), plan_.tok_assign.data(),
                        plan_.gate.data(), T, D_, false);
    if (shared_) {
        shared_->forward(be, ps, shared_y_.data(), x, T);
        be.add(y, shared_y_.data(), size_t(T) * D_);
    }

    // Balancing losses; in training their gradients are accumulated now for backward.
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
    const float alpha = float(balance_.alpha);
    aux_ = 0.0;
    if (balance_.loss == BalanceLoss::switch_loss)
        aux_ = switch_loss(plan_, state_.probs.data(), K_, alpha, dprobs, dscratch_);
    else if (balance_.loss == BalanceLoss::shazeer)
        aux_ =
            shazeer_loss(plan_, state_, logits_.data(), alpha, dslot_aux, dlog_direct, dscratch_);
    z_ = z_loss(logits_.data(), T, L_, float(balance_.z_loss),
                balance_.z_loss > 0.0 ? dlog_direct : nullptr);
    weighted_aux_ = balance_.loss == BalanceLoss::none ? 0.0 : balance_.alpha * aux_;
    weighted_z_ = balance_.z_loss * z_;
}

void MoeLayer::backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x,
                        int T, bool router_grad_parts) {
    const int A = plan_.assignments();
    const int* off = plan_.offsets.data();
    const int* tok_off = plan_.tok_offsets.data();
    const int* tok_assign = plan_.tok_assign.data();
    // The activation gradients are written over the forward workspaces as these die, so that
    // backward allocates nothing of its own (the ops' aliasing rules are in backend.h):
    //   yd_   read by combine_by_token_backward for the gate gradients, which writes dY over it
    //   h_    read by the W2 weight gradient, then holds dh
    //   pre_  read by act_backward, which writes dpre over it in place
    //   xd_   read by the W1 weight gradient, then holds dXd
    // Combine backward: dY and d gate of each assignment.
    float* dyd = yd_.data();
    be.combine_by_token_backward(dyd, dgate_.data(), dy, yd_.data(), tok_off, tok_assign,
                                 plan_.gate.data(), T, D_);
    // Experts backward, per segment.
    be.gemm_grouped_wgrad(ps.g(w2), size_t(H_) * D_, h_.data(), dyd, off, N_, H_, D_);
    be.bias_grad_grouped(ps.g(b2), D_, dyd, off, N_, D_);
    float* dh = h_.data();  // h is dead: the W2 weight gradient was its last reader
    be.gemm_grouped_rows(dh, dyd, ps.p(w2), size_t(H_) * D_, off, N_, H_, D_, true, 0.0f);
    float* dpre = pre_.data();
    be.act_backward(dpre, dh, pre_.data(), A, H_, act_);
    be.gemm_grouped_wgrad(ps.g(w1), size_t(D_) * H1_, xd_.data(), dpre, off, N_, D_, H1_);
    be.bias_grad_grouped(ps.g(b1), H1_, dpre, off, N_, H1_);
    float* dxd = xd_.data();  // Xd is dead: the W1 weight gradient was its last reader
    be.gemm_grouped_rows(dxd, dpre, ps.p(w1), size_t(D_) * H1_, off, N_, D_, H1_, true, 0.0f);
    // Scatter back to tokens: dx[t] = sum of its assignments' dXd, in the by-token order.
    be.combine_by_token(dx, dxd, tok_off, tok_assign, nullptr, T, D_, false);

    // Router. Its backward is linear in (d slot, d p): for training, one pass with the summed
    // slot gradients of the task and auxiliary losses, plus the auxiliary losses' direct logit
    // gradients.
    const size_t TL = size_t(T) * L_, R = size_t(state_.R);
    gate_grad_to_slots(plan_, dgate_.data(), dslot_task_.data(), R);
    if (router_grad_parts) {
        // Statistics (gradient interference): the two parts apart, before they are summed.
        router_->backward(state_, dslot_task_.data(), nullptr, dlog_.data());
        router_->backward(state_, dslot_aux_.data(), dprobs_.data(), dlog_aux_.data());
        be.add(dlog_aux_.data(), dlog_direct_.data(), TL);
        head_.param_grad(be, ps, gw_task_.data(), dlog_.data(), x, T);
        head_.param_grad(be, ps, gw_aux_.data(), dlog_aux_.data(), x, T);
    }
    be.add(dslot_aux_.data(), dslot_task_.data(), R);
    router_->backward(state_, dslot_aux_.data(), dprobs_.data(), dlog_.data());
    be.add(dlog_.data(), dlog_direct_.data(), TL);
    head_.backward(be, ps, dx, dlog_.data(), x, T);
    if (shared_) shared_->backward(be, ps, dx, dy, x, T, true);
}

void MoeLayer::after_optimizer_step() {
    if (balance_.bias_rate > 0.0)
        bias_update(bias_.data(), plan_.routed.data(), N_, float(balance_.bias_rate));
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
