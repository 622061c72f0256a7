#include "train/train_state.h"

#include <stdexcept>

namespace moe {

void MetricWindow::add(const LossParts& lp, int64_t tokens_in_step) {
    loss += lp.loss;
    task += lp.task;
    aux += lp.aux;
    z += lp.z;
    correct += lp.correct;
    tokens += tokens_in_step;
    steps += 1;
}

void MetricWindow::save(BinaryWriter& w) const {
    w.tag("MWIN");
    for (double v : {loss, task, aux, z}) w.put(v);
    for (int64_t v : {correct, tokens, steps}) w.put(v);
}

void MetricWindow::load(BinaryReader& r) {
    r.tag("MWIN");
    for (double* v : {&loss, &task, &aux, &z}) r.get(*v);
    for (int64_t* v : {&correct, &tokens, &steps}) r.get(*v);
}

StatsState::StatsState(const Config& cfg, int moe_layers, int groups)
    : train_windows(size_t(moe_layers), LayerWindow(cfg.experts.count, groups)),
      flips(size_t(moe_layers)),
      collapse(moe_layers, cfg.experts.count),
      summary(cfg, moe_layers) {}

void StatsState::save(BinaryWriter& w) const {
    w.tag("STAT");
    w.put<uint64_t>(train_windows.size());
    for (const LayerWindow& lw : train_windows) lw.save(w);
    for (const FlipTracker& f : flips) f.save(w);
    collapse.save(w);
    summary.save(w);
    metrics.save(w);
}

void StatsState::load(BinaryReader& r) {
    r.tag("STAT");
    if (r.get<uint64_t>() != train_windows.size())
        throw std::runtime_error("training state: statistics of another number of MoE layers");
    for (LayerWindow& lw : train_windows) lw.load(r);
    for (FlipTracker& f : flips) f.load(r);
    collapse.load(r);
    summary.load(r);
    metrics.load(r);
}

std::string_view to_string(EarlyStopReason r) {
    switch (r) {
        case EarlyStopReason::none:
            return "";
        case EarlyStopReason::loss_rise:
            return "loss_rise";
        case EarlyStopReason::loss_floor:
            return "loss_floor";
    }
    return "";
}

EarlyStopReason EarlyStopState::observe(const EarlyStopConfig& c, int64_t s, double loss) {
    if (!c.on()) return EarlyStopReason::none;
    EarlyStopReason r = EarlyStopReason::none;
    if (s > c.after_step) {
        if (c.loss_rise > 0.0 && loss > min_loss + c.loss_rise)
            r = EarlyStopReason::loss_rise;
        else if (c.loss_floor > 0.0 && loss <= c.loss_floor)
            r = EarlyStopReason::loss_floor;
    }
    if (loss < min_loss) min_loss = loss;
    reason = r;
    return r;
}

void EarlyStopState::save(BinaryWriter& w) const {
    w.tag("ESTP");
    w.put(min_loss);
    w.put<uint8_t>(uint8_t(reason));
}

void EarlyStopState::load(BinaryReader& r) {
    r.tag("ESTP");
    r.get(min_loss);
    const uint8_t v = r.get<uint8_t>();
    if (v > uint8_t(EarlyStopReason::loss_floor))
        throw std::runtime_error("training state: an unknown early-stop reason");
    reason = EarlyStopReason(v);
}

TrainState::TrainState(const Config& cfg, int input_dim, int num_classes, int groups, Backend* be)
    : model(cfg, input_dim, num_classes, cfg.train.batch_size, be),
      opt(cfg.train, model.params().size(), cfg.experts.count, be),
      stats(cfg, int(model.moe_block_index().size()), groups) {}

void TrainState::save(BinaryWriter& w) const {
    w.tag("TRST");
    w.put<int64_t>(step);
    model.save(w);
    opt.save(w);
    stats.save(w);
    early.save(w);
}

void TrainState::load(BinaryReader& r) {
    r.tag("TRST");
    step = r.get<int64_t>();
    if (step < 0) throw std::runtime_error("training state: a negative step");
    model.load(r);
    opt.load(r);
    stats.load(r);
    early.load(r);
}

}  // namespace moe
