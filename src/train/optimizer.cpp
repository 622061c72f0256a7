#include "train/optimizer.h"

#include <cmath>

namespace moe {

Optimizer::Optimizer(const TrainConfig& cfg, size_t n) : cfg_(cfg) {
    m_.assign(n, 0.0f);
    if (cfg.optimizer != OptimizerKind::sgd) v_.assign(n, 0.0f);
}

void Optimizer::step(Backend& be, ParamStore& ps, float lr, int64_t t, float grad_scale,
                     double* grad_sumsq) {
    float* p = ps.data().data();
    float* g = ps.grad().data();
    const size_t n = ps.data().size();
    if (cfg_.optimizer == OptimizerKind::sgd) {
        be.sgd_step(p, g, m_.data(), n, lr, float(cfg_.momentum), grad_scale, grad_sumsq);
        return;
    }
    const float wd = cfg_.optimizer == OptimizerKind::adamw ? float(cfg_.weight_decay) : 0.0f;
    const Backend::AdamHyper h{lr, float(cfg_.beta1), float(cfg_.beta2), 1e-8f, wd, t};
    be.adam_step(p, g, m_.data(), v_.data(), n, h, grad_scale, grad_sumsq);
}

double lr_at(const TrainConfig& cfg, int64_t s) {
    const double lr = cfg.lr;
    if (cfg.warmup_steps > 0 && s <= cfg.warmup_steps)
        return lr * double(s) / double(cfg.warmup_steps);
    if (cfg.schedule == Schedule::constant) return lr;
    const double span = double(cfg.steps - cfg.warmup_steps);
    const double progress = span > 0 ? double(s - cfg.warmup_steps) / span : 1.0;
    constexpr double kPi = 3.14159265358979323846;
    return cfg.min_lr + 0.5 * (lr - cfg.min_lr) * (1.0 + std::cos(kPi * progress));
}

float clip_scale(double norm, double max_norm) {
    return max_norm > 0.0 && std::isfinite(norm) && norm > max_norm ? float(max_norm / norm) : 1.0f;
}

void Optimizer::save(BinaryWriter& w) const {
    w.tag("OPTM");
    w.vec(m_);
    w.vec(v_);
}

void Optimizer::load(BinaryReader& r) {
    r.tag("OPTM");
    r.vec(m_, int64_t(m_.size()));
    r.vec(v_, int64_t(v_.size()));
}

}  // namespace moe
