#include "train/summary.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "config/config_load.h"
#include "io/csv_writer.h"

namespace moe {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

const std::vector<std::string>& summary_config_keys() {
    static const std::vector<std::string> keys = {"name",
                                                  "seed",
                                                  "data.task",
                                                  "data.clusters.imbalance",
                                                  "model.kind",
                                                  "model.d_model",
                                                  "model.layers",
                                                  "model.moe_every",
                                                  "experts.kind",
                                                  "experts.count",
                                                  "experts.d_ff",
                                                  "experts.activation",
                                                  "experts.shared",
                                                  "experts.shared_gate",
                                                  "router.type",
                                                  "router.k",
                                                  "router.score",
                                                  "router.normalize",
                                                  "router.noise",
                                                  "router.noise_kind",
                                                  "router.scale",
                                                  "router.topk.second_expert",
                                                  "router.topk.groups",
                                                  "router.topk.topk_groups",
                                                  "router.topk.gate_logits",
                                                  "capacity.factor",
                                                  "capacity.drop_policy",
                                                  "capacity.eval_factor",
                                                  "capacity.min",
                                                  "balance.loss",
                                                  "balance.alpha",
                                                  "balance.losses.switch",
                                                  "balance.losses.gshard",
                                                  "balance.losses.shazeer",
                                                  "balance.z_loss",
                                                  "balance.bias_rate",
                                                  "balance.bias_rule",
                                                  "balance.bias_warmup",
                                                  "balance.bias_decay",
                                                  "train.steps",
                                                  "train.batch_size",
                                                  "train.optimizer",
                                                  "train.lr"};
    return keys;
}

SummaryBuilder::SummaryBuilder(const Config& cfg, int moe_layers)
    : cfg_(cfg),
      last_eval_(moe_layers),
      loss_(kNaN),
      accuracy_(kNaN),
      worst_vio_(kNaN),
      worst_drop_(kNaN),
      task_loss_(kNaN),
      ideal_(kNaN) {}

void SummaryBuilder::observe_eval(int layer, const LayerStats& st) {
    last_eval_[layer] = st;
    have_eval_ = true;
}

void SummaryBuilder::set_final_eval(double loss, double accuracy, double task_loss) {
    loss_ = loss;
    task_loss_ = task_loss;
    accuracy_ = accuracy;
}

void SummaryBuilder::observe_late_train(const LayerStats& st) {
    auto worst = [](double& w, double v) {
        if (std::isnan(v)) return;
        if (std::isnan(w) || v > w) w = v;
    };
    worst(worst_vio_, st.max_vio);
    worst(worst_drop_, st.drop_rate);
}

void SummaryBuilder::finish(RunStatus status, int64_t steps_done, const CollapseTracker& collapse,
                            std::string_view stop_reason) {
    status_ = status;
    stop_reason_ = std::string(stop_reason);
    steps_done_ = steps_done;
    if (auto s = collapse.first_dead_step()) first_dead_ = std::to_string(*s);
    dead_final_ = 0;
    for (int l = 0; l < int(last_eval_.size()); ++l) dead_final_ += collapse.dead_count(l);
}

void SummaryBuilder::save(BinaryWriter& w) const {
    w.tag("SUMM");
    w.put<uint8_t>(have_eval_);
    for (double v : {loss_, accuracy_, worst_vio_, worst_drop_, task_loss_}) w.put(v);
    w.put<uint64_t>(last_eval_.size());
    for (const LayerStats& s : last_eval_) {
        for (double v : {s.max_vio, s.load_cv, s.effective_experts, s.drop_rate,
                         s.dropped_token_rate, s.spec_nmi, s.dispatch_entropy})
            w.put(v);
        w.put<int64_t>(s.dead_experts);
    }
}

void SummaryBuilder::load(BinaryReader& r) {
    r.tag("SUMM");
    have_eval_ = r.get<uint8_t>() != 0;
    for (double* v : {&loss_, &accuracy_, &worst_vio_, &worst_drop_, &task_loss_}) r.get(*v);
    if (r.get<uint64_t>() != last_eval_.size())
        throw std::runtime_error("training state: a summary of another number of MoE layers");
    for (LayerStats& s : last_eval_) {
        s = LayerStats{};
        for (double* v : {&s.max_vio, &s.load_cv, &s.effective_experts, &s.drop_rate,
                          &s.dropped_token_rate, &s.spec_nmi, &s.dispatch_entropy})
            r.get(*v);
        s.dead_experts = int(r.get<int64_t>());
    }
}

std::string SummaryBuilder::csv() const {
    std::string header, row;
    auto add = [&](std::string_view name, const CsvCell& cell) {
        if (!header.empty()) {
            header += ',';
            row += ',';
        }
        header += csv_quote(name);
        row += cell.text();
    };
    for (const std::string& key : summary_config_keys())
        add(key, CsvCell(config_value_string(cfg_, key)));
    add("status", CsvCell(to_string(status_)));
    add("steps", CsvCell(steps_done_));
    add("loss", CsvCell(loss_));
    add("accuracy", CsvCell(accuracy_));
    // Final eval statistics averaged over MoE layers (empty when there was no evaluation).
    auto mean = [&](auto field) {
        if (!have_eval_ || last_eval_.empty()) return kNaN;
        double s = 0;
        for (const LayerStats& st : last_eval_) s += field(st);
        return s / double(last_eval_.size());
    };
    add("max_vio", CsvCell(mean([](const LayerStats& s) { return s.max_vio; })));
    add("load_cv", CsvCell(mean([](const LayerStats& s) { return s.load_cv; })));
    add("effective_experts",
        CsvCell(mean([](const LayerStats& s) { return s.effective_experts; })));
    add("dead_experts", CsvCell(mean([](const LayerStats& s) { return double(s.dead_experts); })));
    add("drop_rate", CsvCell(mean([](const LayerStats& s) { return s.drop_rate; })));
    add("dropped_token_rate",
        CsvCell(mean([](const LayerStats& s) { return s.dropped_token_rate; })));
    add("spec_nmi", CsvCell(mean([](const LayerStats& s) { return s.spec_nmi; })));
    add("dispatch_entropy", CsvCell(mean([](const LayerStats& s) { return s.dispatch_entropy; })));
    add("worst_max_vio", CsvCell(worst_vio_));
    add("worst_drop_rate", CsvCell(worst_drop_));
    add("first_dead_step", first_dead_.empty() ? CsvCell() : CsvCell(first_dead_));
    add("dead_final", CsvCell(dead_final_));
    if (cfg_.train.early_stop.on())
        add("stop_reason", stop_reason_.empty() ? CsvCell() : CsvCell(stop_reason_));
    if (!std::isnan(ideal_)) {
        add("ideal_loss", CsvCell(ideal_));
        add("loss_gap", CsvCell(task_loss_ - ideal_));  // NaN (empty) before the first evaluation
    }
    return header + "\n" + row + "\n";
}

}  // namespace moe
