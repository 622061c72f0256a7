// The one-row summary.csv of a run (METRICS.md "Per run"): the config values that sweeps vary,
// the status, and the final and extreme statistics.
//
//   loss, accuracy          final evaluation
//   max_vio, load_cv, effective_experts, dead_experts, drop_rate, dropped_token_rate,
//   spec_nmi, dispatch_entropy
//                           final evaluation, averaged over MoE layers
//   worst_max_vio, worst_drop_rate
//                           the largest train-row value (over layers and log rows) in the
//                           last 10% of steps
//   ideal_loss, loss_gap    tasks with an exact ideal loss only (markov, modular): the task's
//                           ideal loss on the eval set, and the final eval task_loss minus it
//   first_dead_step         first eval step at which an expert was declared dead (empty: never)
//   dead_final              experts dead at the end (collapse events), summed over layers
//   stop_reason             runs with a train.early_stop rule on only: the rule that ended the
//                           run (loss_rise, loss_floor; empty: it ran all train.steps)
// Timing (wall time, tokens/s) is not here: it is in timing.csv, so that summary.csv is
// byte-identical from run to run.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "stats/routing_stats.h"
#include "train/trainer.h"

namespace moe {

// The config keys every summary.csv carries, in column order.
const std::vector<std::string>& summary_config_keys();

class SummaryBuilder {
public:
    SummaryBuilder(const Config& cfg, int moe_layers);
    void observe_eval(int layer, const LayerStats& st);
    void set_final_eval(double loss, double accuracy, double task_loss);
    // The task's ideal loss (Task::ideal_loss): summary.csv gains ideal_loss and loss_gap when it
    // is not NaN. Not training state: the task recomputes it.
    void set_ideal_loss(double ideal) { ideal_ = ideal; }
    void observe_late_train(const LayerStats& st);
    // stop_reason: the train.early_stop rule that ended the run ("": none); summary.csv has
    // the column stop_reason when train.early_stop has a rule on.
    void finish(RunStatus status, int64_t steps_done, const CollapseTracker& collapse,
                std::string_view stop_reason = {});

    // What a resumed run needs (the final eval, the late-train extremes).
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);
    std::string csv() const;                     // header line + one row
    double final_loss() const { return loss_; }  // NaN before the first evaluation
    double final_accuracy() const { return accuracy_; }

private:
    Config cfg_;
    std::vector<LayerStats> last_eval_;
    bool have_eval_ = false;
    double loss_, accuracy_, worst_vio_, worst_drop_, task_loss_;
    double ideal_;
    RunStatus status_ = RunStatus::completed;
    int64_t steps_done_ = 0;
    std::string first_dead_;
    int dead_final_ = 0;
    std::string stop_reason_;
};

}  // namespace moe
