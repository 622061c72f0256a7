#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/check.h"

namespace moe {

namespace {

bool uses_moments2(OptimizerKind k) {
    return k == OptimizerKind::adam || k == OptimizerKind::adamw;
}

OptimizerKind resolve(RouterOptimizer r, OptimizerKind main) {
    switch (r) {
        case RouterOptimizer::same:
            return main;
        case RouterOptimizer::sgd:
            return OptimizerKind::sgd;
        case RouterOptimizer::adam:
            return OptimizerKind::adam;
        case RouterOptimizer::adamw:
            return OptimizerKind::adamw;
        case RouterOptimizer::ngd:
            return OptimizerKind::ngd;
    }
    return main;
}

}  // namespace

Optimizer::Optimizer(const TrainConfig& cfg, size_t n, int experts, Backend* be)
    : cfg_(cfg),
      experts_(std::max(experts, 1)),
      router_kind_(resolve(cfg.router_optimizer, cfg.optimizer)) {
    grouped_ = cfg.optimizer == OptimizerKind::ngd || router_kind_ != cfg.optimizer ||
               (cfg.router_lr > 0.0 && cfg.router_lr != cfg.lr);
    m_.allocate(be, n);
    if (uses_moments2(cfg.optimizer) || uses_moments2(router_kind_)) v_.allocate(be, n);
}

bool Optimizer::in_router_group(const std::string& name) {
    return name.find(".router.") != std::string::npos;
}

void Optimizer::plan(const ParamStore& ps) {
    planned_ = true;
    const float router_factor = cfg_.router_lr > 0.0 ? float(cfg_.router_lr / cfg_.lr) : 1.0f;
    std::vector<std::pair<std::string, size_t>> expert_layers;  // prefix, first ngd group
    for (const ParamTensor& pt : ps.tensors()) {
        const bool router = in_router_group(pt.name);
        const OptimizerKind kind = router ? router_kind_ : cfg_.optimizer;
        const float factor = router ? router_factor : 1.0f;
        if (kind != OptimizerKind::ngd) {
            // runs of one kind and lr merge across the alignment padding between tensors (its
            // gradients are 0)
            if (!runs_.empty() && runs_.back().kind == kind && runs_.back().lr_factor == factor)
                runs_.back().end = pt.offset + pt.size;
            else
                runs_.push_back({pt.offset, pt.offset + pt.size, kind, factor});
            continue;
        }
        const size_t at = pt.name.find(".experts.");
        if (router || at == std::string::npos) {
            ngd_groups_.push_back({{{pt.offset, pt.offset + pt.size}}, factor});
            continue;
        }
        // a routed expert tensor: experts_ equal expert-major slices, one per expert's group
        MOESIM_CHECK(pt.size % size_t(experts_) == 0,
                     "an experts tensor is not experts.count equal slices");
        const std::string prefix = pt.name.substr(0, at);
        size_t first = ngd_groups_.size();
        auto it = std::find_if(expert_layers.begin(), expert_layers.end(),
                               [&](const auto& e) { return e.first == prefix; });
        if (it == expert_layers.end()) {
            expert_layers.emplace_back(prefix, first);
            ngd_groups_.resize(first + size_t(experts_));
            for (int i = 0; i < experts_; ++i) ngd_groups_[first + i].lr_factor = factor;
        } else {
            first = it->second;
        }
        const size_t slice = pt.size / size_t(experts_);
        for (int i = 0; i < experts_; ++i)
            ngd_groups_[first + i].ranges.emplace_back(pt.offset + i * slice,
                                                       pt.offset + (i + 1) * slice);
    }
}

void Optimizer::step_run(Backend& be, float* p, float* g, const Run& r, float lr, int64_t t,
                         float grad_scale, double* sumsq) {
    const size_t n = r.end - r.begin;
    p += r.begin;
    g += r.begin;
    if (r.kind == OptimizerKind::sgd) {
        be.sgd_step(p, g, m_.data() + r.begin, n, lr, float(cfg_.momentum), grad_scale, sumsq);
        return;
    }
    const float wd = r.kind == OptimizerKind::adamw ? float(cfg_.weight_decay) : 0.0f;
    const Backend::AdamHyper h{lr, float(cfg_.beta1), float(cfg_.beta2), 1e-8f, wd, t};
    be.adam_step(p, g, m_.data() + r.begin, v_.data() + r.begin, n, h, grad_scale, sumsq);
}

void Optimizer::step(Backend& be, ParamStore& ps, float lr, int64_t t, float grad_scale,
                     double* grad_sumsq) {
    float* p = ps.data().data();
    float* g = ps.grad().data();
    const size_t n = ps.data().size();
    if (!grouped_) {
        step_run(be, p, g, Run{0, n, cfg_.optimizer, 1.0f}, lr, t, grad_scale, grad_sumsq);
        return;
    }
    if (!planned_) plan(ps);
    double total = 0.0;
    for (const Run& r : runs_) {
        double part = 0.0;
        step_run(be, p, g, r, lr * r.lr_factor, t, grad_scale, grad_sumsq ? &part : nullptr);
        total += part;
    }
    // ngd: p -= lr * g / |g| per group (grad_scale cancels); sequential double sums
    const bool host = ps.data().on_host();
    for (const NgdGroup& grp : ngd_groups_) {
        double ss = 0.0;
        for (const auto& [b, e] : grp.ranges) {
            if (host)
                for (size_t i = b; i < e; ++i) ss += double(g[i]) * g[i];
            else
                ss += be.sum_squares(g + b, e - b);
        }
        total += ss;
        const float step = ss > 0.0 ? float(double(lr * grp.lr_factor) / std::sqrt(ss)) : 0.0f;
        for (const auto& [b, e] : grp.ranges) {
            if (host) {
                for (size_t i = b; i < e; ++i) {
                    p[i] -= step * g[i];
                    g[i] = 0.0f;
                }
            } else {
                // p -= step * g and g = 0, through momentum-free SGD (the moments of ngd ranges
                // are unused: they serve as its velocity)
                be.sgd_step(p + b, g + b, m_.data() + b, e - b, step, 0.0f, 1.0f, nullptr);
            }
        }
    }
    if (grad_sumsq) *grad_sumsq = total;
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
    w.vec(m_.to_vector());
    w.vec(v_.to_vector());
}

void Optimizer::load(BinaryReader& r) {
    r.tag("OPTM");
    std::vector<float> v;
    r.vec(v, int64_t(m_.size()));
    m_.assign_from(v.data());
    r.vec(v, int64_t(v_.size()));
    v_.assign_from(v.data());
}

}  // namespace moe
