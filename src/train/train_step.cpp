#include "train/train_step.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace moe {

StepOutcome train_step(Backend& be, const Config& cfg, const Task& task, Model& model,
                       Optimizer& opt, Batch& batch, int64_t s, bool router_grad_parts,
                       const std::function<bool(const LossParts&)>& before_update) {
    StepOutcome out;
    const int B = cfg.train.batch_size;
    task.train_batch(s, B, batch);
    Pass pass;
    pass.training = true;
    pass.step = s;
    pass.capacity_factor = cfg.capacity.factor;
    pass.token_ids = batch.token_ids();  // token tasks: the current token of each example
    pass.sequence_ids = batch.sequence_ids();
    out.loss = model.forward(be, batch.x.data(), batch.y.data(), B, pass);
    if (!std::isfinite(out.loss.loss)) {
        out.finite = false;
        out.message = fmt::format("the loss is {} at step {}", out.loss.loss, s);
        return out;
    }
    if (before_update && before_update(out.loss)) {
        out.updated = false;
        out.lr = lr_at(cfg.train, s);
        out.grad_norm = std::numeric_limits<double>::quiet_NaN();
        return out;
    }
    model.backward(be, B, router_grad_parts);
    out.lr = lr_at(cfg.train, s);
    ParamStore& ps = model.params();
    if (cfg.train.grad_clip > 0.0) {
        // Clipping needs the norm before the update: a pass of its own.
        out.grad_norm = std::sqrt(be.sum_squares(ps.grad().data(), ps.grad().size()));
        if (std::isfinite(out.grad_norm))
            opt.step(be, ps, float(out.lr), s, clip_scale(out.grad_norm, cfg.train.grad_clip));
    } else {
        // Without clipping the norm is only reported: the optimizer's pass computes it.
        double sumsq = 0.0;
        opt.step(be, ps, float(out.lr), s, 1.0f, &sumsq);
        out.grad_norm = std::sqrt(sumsq);
    }
    if (!std::isfinite(out.grad_norm)) {
        out.finite = false;
        out.message = fmt::format("the gradient norm is {} at step {}", out.grad_norm, s);
        return out;
    }
    model.after_optimizer_step();
    return out;
}

}  // namespace moe
