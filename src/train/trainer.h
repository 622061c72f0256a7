// The training loop: batches from the task, forward, backward, clipping, optimizer, bias
// balancing, routing statistics, evaluation, CSV rows, divergence and interruption.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "config/config.h"

namespace moe {

class Backend;

enum class RunStatus { completed, diverged, interrupted };
std::string_view to_string(RunStatus s);

struct Progress {
    int64_t step = 0, steps = 0;
    double loss = 0.0, drop_rate = 0.0, max_vio = 0.0, tokens_per_s = 0.0;
    double elapsed_s = 0.0;
    bool eval = false;  // an evaluation row (then loss/accuracy are eval figures)
    double accuracy = 0.0;
};

struct RunOptions {
    std::filesystem::path out_dir;            // must exist; files are (re)created there
    bool resume = false;                      // continue from out_dir's checkpoint
    const std::atomic<bool>* stop = nullptr;  // set by SIGINT/SIGTERM: stop at a safe point
    int64_t stop_after_step = 0;              // > 0: stop as a signal would, after this step
    std::function<void(const Progress&)> on_progress;  // called at each log and eval row
    // Tests: makes the run's backend instead of backend_create(cfg.device, cfg.threads) (a CPU
    // backend that takes the device code paths, tests/train).
    std::function<std::unique_ptr<Backend>(const Config&)> make_backend;
};

struct RunResult {
    RunStatus status = RunStatus::completed;
    int64_t steps_done = 0;
    double final_eval_loss = 0.0, final_eval_accuracy = 0.0;
    double wall_s = 0.0;
    std::string message;  // why it diverged
    // completed runs: the train.early_stop rule that ended it before train.steps ("loss_rise",
    // "loss_floor"; empty: it ran every step)
    std::string stop_reason;
};

// Trains cfg (validated) and writes metrics.csv, timing.csv, layers.csv, experts.csv,
// specialization.csv, events.csv (token tasks: tokens.csv, positions.csv, position_experts.csv)
// and summary.csv into opts.out_dir, and a checkpoint at every train.checkpoint_every steps (-1: every evaluation)
// and when stopped by opts.stop. With opts.resume it loads out_dir's checkpoint (UserError when
// there is none or it does not fit), cuts every CSV back to the checkpoint's step and continues:
// the files end byte-identical to those of a run that never stopped (timing.csv aside).
RunResult train_run(const Config& cfg, const RunOptions& opts);

}  // namespace moe
