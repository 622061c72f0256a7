// Optimizers over the model's flat parameter buffer, and the learning-rate schedule.
//   adam  (Kingma & Ba 2015), adamw (decoupled weight decay, Loshchilov & Hutter 2019),
//   sgd   (with optional heavy-ball momentum).
// Schedule: linear warmup over train.warmup_steps from lr/warmup to lr, then constant, or cosine
// decay from lr to train.min_lr at the last step.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/serialize.h"
#include "config/config.h"
#include "model/params.h"

namespace moe {

class Optimizer {
public:
    Optimizer(const TrainConfig& cfg, size_t n);
    // One update with learning rate lr; t is the 1-based update count (Adam bias correction).
    // The gradients used are ps.grad() * grad_scale; they are zero on return. grad_sumsq (may be
    // null) receives the sum of squares of ps.grad() as it was on entry.
    void step(Backend& be, ParamStore& ps, float lr, int64_t t, float grad_scale = 1.0f,
              double* grad_sumsq = nullptr);
    size_t state_floats() const { return m_.size() + v_.size(); }

    // The moments (the update count is the trainer's step, kept by TrainState).
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

private:
    TrainConfig cfg_;
    std::vector<float> m_, v_;
};

// Learning rate at 1-based step s of `steps`.
double lr_at(const TrainConfig& cfg, int64_t s);

// Global-norm clipping (Pascanu et al. 2013): the factor to scale the gradients by, given their
// norm: max_norm / norm when norm > max_norm, else 1 (max_norm 0 = off).
float clip_scale(double norm, double max_norm);

}  // namespace moe
