#include "routing/balancer.h"

namespace moe {

namespace {

// One named loss with coefficient coef, its gradients accumulated into the buffers given.
double one_loss(BalanceLoss loss, float coef, const RoutingPlan& plan, const RouterState& state,
                const float* logits, int K, float* d_probs, float* d_slot, float* d_logits,
                std::vector<double>& scratch, const int64_t* sequence) {
    switch (loss) {
        case BalanceLoss::switch_loss:
            return switch_loss(plan, state.probs.data(), K, coef, d_probs, scratch);
        case BalanceLoss::gshard:
            return gshard_loss(plan, state, state.probs.data(), coef, d_probs, scratch);
        case BalanceLoss::shazeer:
            return shazeer_loss(plan, state, logits, coef, d_slot, d_logits, scratch);
        case BalanceLoss::sequence:
            return sequence_loss(plan, state, state.probs.data(), sequence, coef, d_probs, scratch);
        case BalanceLoss::none:
            return 0.0;
    }
    return 0.0;
}

}  // namespace

AuxLossValues balance_losses(const BalanceConfig& cfg, const RoutingPlan& plan,
                             const RouterState& state, const float* logits, int K, float* d_probs,
                             float* d_slot, float* d_logits, std::vector<double>& scratch,
                             const int64_t* sequence) {
    AuxLossValues v;
    if (cfg.loss != BalanceLoss::none) {
        v.main = one_loss(cfg.loss, float(cfg.alpha), plan, state, logits, K, d_probs, d_slot,
                          d_logits, scratch, sequence);
        v.weighted = cfg.alpha * v.main;
    }
    const std::pair<BalanceLoss, double> extra[] = {
        {BalanceLoss::switch_loss, cfg.losses.switch_loss},
        {BalanceLoss::gshard, cfg.losses.gshard},
        {BalanceLoss::shazeer, cfg.losses.shazeer},
    };
    for (const auto& [loss, coef] : extra) {
        if (!(coef > 0.0)) continue;
        v.weighted += coef * one_loss(loss, float(coef), plan, state, logits, K, d_probs, d_slot,
                                      d_logits, scratch, sequence);
    }
    return v;
}

}  // namespace moe
