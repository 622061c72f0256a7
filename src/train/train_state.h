// Training state has one home (DESIGN.md): everything a resumed run needs, and nothing else.
//
//   model    parameters and gradients (ParamStore), each MoE layer's balancing bias
//   opt      the optimizer's moments (its update count is `step`)
//   stats    the statistics' running state: the open train log window of each MoE layer, the
//            flip and collapse trackers (with the collapse interval's counts), the summary
//            builder and the open metrics window
//   early    train.early_stop's running minimum of the training loss, and whether (why) it
//            ended the run
//   step     the last completed training step
//
// Each part saves and loads itself (backend/serialize.h); save() is a loop over them, so a
// checkpoint (a later issue: `run --resume`) is one call. Data and gating noise are pure
// functions of (seed, step), so no random-number state needs saving.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "backend/serialize.h"
#include "config/config.h"
#include "model/model.h"
#include "stats/routing_stats.h"
#include "train/optimizer.h"
#include "train/summary.h"

namespace moe {

// The sums of metrics.csv's train row over the open log window.
struct MetricWindow {
    double loss = 0, task = 0, aux = 0, z = 0;
    int64_t correct = 0, tokens = 0, steps = 0;

    // tokens: the labels the step's loss counted (LossParts::targets), the accuracy's denominator
    void add(const LossParts& lp, int64_t tokens_in_step);
    void reset() { *this = MetricWindow{}; }
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);
};

struct StatsState {
    std::vector<LayerWindow> train_windows;  // (MoE layers)
    std::vector<FlipTracker> flips;          // (MoE layers)
    CollapseTracker collapse;
    SummaryBuilder summary;
    MetricWindow metrics;

    StatsState(const Config& cfg, int moe_layers, int groups);
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);
};

// Why train.early_stop ended a run (none: it did not).
enum class EarlyStopReason : uint8_t { none, loss_rise, loss_floor };
std::string_view to_string(EarlyStopReason r);  // "", "loss_rise", "loss_floor"

// train.early_stop's state: the smallest training loss of the steps seen so far.
struct EarlyStopState {
    double min_loss = std::numeric_limits<double>::infinity();
    EarlyStopReason reason = EarlyStopReason::none;

    // Step s's training loss (before its update). Checks the rules (steps after after_step:
    // loss_rise first, then loss_floor) against the minimum of the steps before s, then counts
    // the loss in the minimum. Returns the reason to stop (none: go on) and keeps it in
    // `reason`. Nothing happens when no rule is on.
    EarlyStopReason observe(const EarlyStopConfig& c, int64_t s, double loss);
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);
};

struct TrainState {
    Model model;
    Optimizer opt;
    StatsState stats;
    EarlyStopState early;
    int64_t step = 0;

    // be: the backend whose memory holds the model and the optimizer state (null: host memory).
    TrainState(const Config& cfg, int input_dim, int num_classes, int groups,
               Backend* be = nullptr);
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);
};

}  // namespace moe
