// Optimizers over the model's flat parameter buffer, and the learning-rate schedule.
//   adam  (Kingma & Ba 2015), adamw (decoupled weight decay, Loshchilov & Hutter 2019),
//   sgd   (with optional heavy-ball momentum),
//   ngd   normalised gradient descent (as in Chen et al. 2022's experts): p -= lr * g / |g| per
//         normalisation group, where the groups are
//           - an MoE layer's routed expert i: the gradient of all of expert i's parameters
//             concatenated (its slices of <layer>.experts.w1, .b1, .w2, .b2; tensors named
//             "<layer>.experts.*" are split into experts.count equal expert-major slices);
//           - every other tensor (router weights, embeddings, norms, dense FFNs, shared
//             experts): the tensor on its own.
//         A group with a zero gradient is not moved. The gradient's scale cancels, so gradient
//         clipping has no effect on ngd groups; train.momentum is not used by ngd.
//
// Parameter groups: the router group is every tensor whose name contains ".router." (the router
// head's weights, learned-noise weights included); it is stepped with train.router_optimizer
// (same = train.optimizer) at train.router_lr (0 = train.lr; a fixed multiple of train.lr under
// the schedule, so warmup and cosine apply to it alike). Everything else is the main group.
// Both groups share the update count t (Adam's bias correction). With router_optimizer = same,
// router_lr = 0 and optimizer != ngd the update is one pass over the whole buffer, as it always
// was.
//
// Schedule: linear warmup over train.warmup_steps from lr/warmup to lr, then constant, or cosine
// decay from lr to train.min_lr at the last step.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/buffer.h"
#include "backend/serialize.h"
#include "config/config.h"
#include "model/params.h"

namespace moe {

class Optimizer {
public:
    // n: the parameter count; experts: experts.count (the slices of "*.experts.*" tensors for
    // ngd's per-expert normalisation); be: the backend whose memory holds the moments (null:
    // host memory).
    Optimizer(const TrainConfig& cfg, size_t n, int experts = 1, Backend* be = nullptr);
    // One update with learning rate lr (train.lr scheduled; the router group's is lr times
    // router_lr / train.lr); t is the 1-based update count (Adam bias correction).
    // The gradients used are ps.grad() * grad_scale; they are zero on return. grad_sumsq (may be
    // null) receives the sum of squares of ps.grad() as it was on entry.
    void step(Backend& be, ParamStore& ps, float lr, int64_t t, float grad_scale = 1.0f,
              double* grad_sumsq = nullptr);
    size_t state_floats() const { return m_.size() + v_.size(); }

    // The moments (the update count is the trainer's step, kept by TrainState).
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

    // The optimizer of the router group (router_optimizer resolved).
    OptimizerKind router_kind() const { return router_kind_; }
    // Whether tensor `name` is in the router group.
    static bool in_router_group(const std::string& name);

private:
    // A run of consecutive parameters [begin, end) with one optimizer and lr factor.
    struct Run {
        size_t begin = 0, end = 0;
        OptimizerKind kind = OptimizerKind::adam;
        float lr_factor = 1.0f;
    };
    // An ngd normalisation group: the ranges [first, second) whose gradients form one vector.
    struct NgdGroup {
        std::vector<std::pair<size_t, size_t>> ranges;
        float lr_factor = 1.0f;
    };
    void plan(const ParamStore& ps);
    void step_run(Backend& be, float* p, float* g, const Run& r, float lr, int64_t t,
                  float grad_scale, double* sumsq);

    TrainConfig cfg_;
    int experts_ = 1;
    OptimizerKind router_kind_ = OptimizerKind::adam;
    bool grouped_ = false;  // false: one pass over the whole buffer (the defaults)
    bool planned_ = false;
    std::vector<Run> runs_;
    std::vector<NgdGroup> ngd_groups_;
    Buf<float> m_, v_;  // in the backend's memory
};

// Learning rate at 1-based step s of `steps`.
double lr_at(const TrainConfig& cfg, int64_t s);

// Global-norm clipping (Pascanu et al. 2013): the factor to scale the gradients by, given their
// norm: max_norm / norm when norm > max_norm, else 1 (max_norm 0 = off).
float clip_scale(double norm, double max_norm);

}  // namespace moe
