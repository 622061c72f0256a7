// One training step, shared by `moe-sim run` (trainer.cpp) and `moe-sim bench`, so that the
// benchmark times exactly the code that trains: batch, forward, backward, clipping, optimizer,
// auxiliary-loss-free bias update.
#pragma once

#include <functional>
#include <string>

#include "backend/backend.h"
#include "config/config.h"
#include "model/model.h"
#include "tasks/task.h"
#include "train/optimizer.h"

namespace moe {

struct StepOutcome {
    LossParts loss;
    double grad_norm = 0.0;  // before clipping
    double lr = 0.0;
    bool finite = true;   // false: the loss or the gradient is not finite (diverged)
    bool updated = true;  // false: before_update ended the step after its forward pass
    std::string message;  // what was not finite
};

// Step s (1-based): fills `batch` from the task and updates the model in place. The gradients
// must be zero on entry (ParamStore starts so, and each step's optimizer update leaves them so).
// When the step is not finite, the model is not to be trained further: the parameters may
// already have been updated with the non-finite gradients.
// router_grad_parts: also keep the router gradient's task and auxiliary parts for the
// statistics (Model::backward); it never changes the update.
// before_update (when set): called with the step's (finite) loss after the forward pass; when
// it returns true the step ends there, with no backward pass and no update (updated = false,
// grad_norm NaN): the training loop's early stop.
StepOutcome train_step(Backend& be, const Config& cfg, const Task& task, Model& model,
                       Optimizer& opt, Batch& batch, int64_t s, bool router_grad_parts,
                       const std::function<bool(const LossParts&)>& before_update = {});

}  // namespace moe
