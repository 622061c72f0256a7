#include "train/train_step.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "routing/balancer.h"

namespace moe {

StepOutcome train_step(Backend& be, const Config& cfg, const Task& task, Model& model,
                       Optimizer& opt, Batch& batch, int64_t s) {
    StepOutcome out;
    const int B = cfg.train.batch_size;
    task.train_batch(s, B, batch);
    std::fill(model.params().grad().begin(), model.params().grad().end(), 0.0f);
    out.loss = model.forward(be, batch.x.data(), batch.y.data(), B,
                             StepInfo{true, s, cfg.capacity.factor});
    if (!std::isfinite(out.loss.loss)) {
        out.finite = false;
        out.message = fmt::format("the loss is {} at step {}", out.loss.loss, s);
        return out;
    }
    model.backward(be, B);
    out.grad_norm = clip_grad_norm(be, model.params(), cfg.train.grad_clip);
    if (!std::isfinite(out.grad_norm)) {
        out.finite = false;
        out.message = fmt::format("the gradient norm is {} at step {}", out.grad_norm, s);
        return out;
    }
    out.lr = lr_at(cfg.train, s);
    opt.step(be, model.params(), float(out.lr), s);
    if (cfg.balance.bias_rate > 0.0)
        for (MoeLayer* layer : model.moe_layers())
            bias_update(layer->bias(), layer->plan().routed.data(), layer->experts(),
                        float(cfg.balance.bias_rate));
    return out;
}

}  // namespace moe
