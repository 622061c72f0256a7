#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "backend/backend.h"
#include "config/config_load.h"
#include "io/atomic_file.h"
#include "io/csv_cut.h"
#include "io/csv_writer.h"
#include "model/model.h"
#include "stats/routing_stats.h"
#include "stats/token_stats.h"
#include "tasks/task.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/summary.h"
#include "train/train_state.h"
#include "train/train_step.h"

namespace moe {

std::string_view to_string(RunStatus s) {
    switch (s) {
        case RunStatus::completed:
            return "completed";
        case RunStatus::diverged:
            return "diverged";
        case RunStatus::interrupted:
            return "interrupted";
    }
    return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The CSV files of one run, and the evaluation's scratch (rebuilt at every evaluation, so not
// training state).
struct Recorder {
    std::vector<LayerWindow> eval_win;
    std::vector<std::vector<int>> eval_top1;  // (layers, eval tokens)
    std::vector<int> blocks;                  // block index of each MoE layer
    // Token tasks (the eval set has token ids and positions): the token-level statistics.
    bool token_stats = false;
    std::vector<TokenWindow> tok_win;  // (layers)
    std::vector<int> report_ids;       // the token ids of tokens.csv, ascending
    CsvWriter metrics, timing, layers, experts, specialization, events, tokens, positions,
        position_experts;
    std::vector<CsvCell> row;

    // The files of a run, in order (tokens.csv, positions.csv and position_experts.csv: token
    // tasks only).
    static constexpr const char* kFiles[] = {
        "metrics.csv", "timing.csv", "layers.csv",    "experts.csv",         "specialization.csv",
        "events.csv",  "tokens.csv", "positions.csv", "position_experts.csv"};
    static constexpr int kMaxReportedTokens = 256;  // tokens.csv: the most frequent ids

    // mode append: a resumed run (the files were cut back to its checkpoint's step).
    // ideal: the task has an exact ideal loss; metrics.csv then ends with ideal_loss and loss_gap.
    // A token task (eval set with token ids and positions) adds spec_nmi_token to layers.csv and
    // writes tokens.csv and positions.csv. So a clusters run's files are what they were before
    // token tasks.
    Recorder(int NL, int N, int G, const Batch& eval, std::vector<int> blocks_, bool ideal,
             const std::filesystem::path& dir, CsvMode mode)
        : eval_win(NL, LayerWindow(N, G)),
          eval_top1(NL, std::vector<int>(eval.B, 0)),
          blocks(std::move(blocks_)),
          token_stats(!eval.token.empty() && !eval.position.empty()),
          metrics(dir / "metrics.csv", metrics_header(ideal), mode),
          timing(dir / "timing.csv", {"step", "tokens_per_s", "step_ms", "wall_s"}, mode),
          experts(dir / "experts.csv",
                  {"step", "split", "layer", "expert", "load", "tokens", "processed", "dropped",
                   "importance", "bias"},
                  mode),
          specialization(dir / "specialization.csv", {"step", "layer", "expert", "group", "tokens"},
                         mode),
          events(dir / "events.csv", {"step", "layer", "expert", "event"}, mode) {
        std::vector<std::string> h = {"step", "split", "layer"};
        for (auto c : kLayerStatColumns) {
            h.emplace_back(c);
            if (token_stats && c == "spec_nmi") h.emplace_back("spec_nmi_token");
        }
        layers = CsvWriter(dir / "layers.csv", h, mode);
        if (!token_stats) return;
        const int V = 1 + *std::max_element(eval.token.begin(), eval.token.end());
        const int P = 1 + *std::max_element(eval.position.begin(), eval.position.end());
        tok_win.assign(size_t(NL), TokenWindow(N, V, P));
        report_ids = reported_tokens(eval.token, V, kMaxReportedTokens);
        tokens =
            CsvWriter(dir / "tokens.csv", {"step", "layer", "token", "expert", "tokens"}, mode);
        positions = CsvWriter(dir / "positions.csv",
                              {"step", "layer", "position", "tokens", "processed", "dropped_tokens",
                               "drop_rate", "dropped_token_rate"},
                              mode);
        position_experts = CsvWriter(dir / "position_experts.csv",
                                     {"step", "layer", "position", "expert", "tokens"}, mode);
    }

    static std::vector<std::string> metrics_header(bool ideal) {
        std::vector<std::string> h = {"step",   "split",    "loss", "task_loss", "aux_loss",
                                      "z_loss", "accuracy", "lr",   "grad_norm"};
        if (ideal) {
            h.emplace_back("ideal_loss");
            h.emplace_back("loss_gap");
        }
        return h;
    }

    // spec_nmi_token: the layer's value on eval rows of a token task, NaN otherwise.
    void write_layer_rows(int64_t step, std::string_view split, int l, const LayerStats& st,
                          const float* bias, double spec_nmi_token = kNaN) {
        row.clear();
        row.emplace_back(step);
        row.emplace_back(split);
        row.emplace_back(blocks[l]);
        const auto values = layer_stat_values(st);
        for (size_t c = 0; c < values.size(); ++c) {
            row.emplace_back(values[c]);
            if (token_stats && kLayerStatColumns[c] == "spec_nmi") row.emplace_back(spec_nmi_token);
        }
        layers.write_row(row);
        for (int i = 0; i < int(st.experts.size()); ++i) {
            const ExpertStats& e = st.experts[i];
            const double load = st.num_tokens > 0 ? e.load : kNaN;
            experts.write_row({step, split, blocks[l], i, load, e.tokens, e.processed, e.dropped,
                               st.num_tokens > 0 ? e.importance : kNaN, bias[i]});
        }
    }
    // tokens.csv, positions.csv and position_experts.csv rows of MoE layer l at eval `step`
    // (token tasks): the non-zero cells of the token x top-1 expert table for the reported ids,
    // every position that had tokens, the non-zero cells of the position x top-1 expert table.
    void write_token_rows(int64_t step, int l) {
        const TokenWindow& w = tok_win[size_t(l)];
        const int N = w.experts();
        const auto table = w.token_expert();
        for (int v : report_ids)
            for (int i = 0; i < N; ++i) {
                const int64_t n = table[size_t(v) * size_t(N) + size_t(i)];
                if (n > 0) tokens.write_row({step, blocks[l], v, i, n});
            }
        for (const PositionStats& p : w.positions())
            positions.write_row({step, blocks[l], p.position, p.tokens,
                                 p.has_processed ? CsvCell(p.processed) : CsvCell(),
                                 p.dropped_tokens, p.drop_rate, p.dropped_token_rate});
        const auto by_pos = w.position_expert();
        for (int s = 0; s < int(by_pos.size()) / std::max(N, 1); ++s)
            for (int i = 0; i < N; ++i) {
                const int64_t n = by_pos[size_t(s) * size_t(N) + size_t(i)];
                if (n > 0) position_experts.write_row({step, blocks[l], s, i, n});
            }
    }
    void flush() {
        metrics.flush();
        timing.flush();
        layers.flush();
        experts.flush();
        specialization.flush();
        events.flush();
        if (token_stats) {
            tokens.flush();
            positions.flush();
            position_experts.flush();
        }
    }
};

// Throughput since the last timing row (not training state: it restarts with the process).
struct TimingWindow {
    double seconds = 0.0;
    int64_t tokens = 0, steps = 0;
};

// One run: the named steps of the loop below.
class Run {
public:
    Run(const Config& cfg, const RunOptions& opts)
        : cfg_(cfg),
          opts_(opts),
          t_start_(Clock::now()),
          be_(opts.make_backend ? opts.make_backend(cfg) : backend_create(cfg.device, cfg.threads)),
          task_(task_create(cfg)),
          G_(task_->num_groups()),
          st_(cfg, task_->input_dim(), task_->num_classes(), G_, be_.get()),
          moe_(st_.model.moe_layers()),
          rec_(open_recorder()) {
        // The device routing path keeps each layer's open train window in the backend's memory:
        // it starts from the (loaded or empty) host window.
        for (size_t l = 0; l < moe_.size(); ++l)
            if (moe_[l]->routes_on_device())
                moe_[l]->window_upload(*be_, G_, st_.stats.train_windows[l].summary_counts(),
                                       st_.stats.train_windows[l].summary_sums());
    }

    RunResult run() {
        const int64_t steps = cfg_.train.steps;
        // a resumed run that train.early_stop had ended is over: its files are rewritten as they were
        const int64_t last = st_.early.reason != EarlyStopReason::none ? st_.step : steps;
        for (int64_t s = st_.step + 1; s <= last; ++s) {
            if ((opts_.stop && opts_.stop->load()) ||
                (opts_.stop_after_step > 0 && st_.step >= opts_.stop_after_step)) {
                result_.status = RunStatus::interrupted;
                // an interrupted run loses nothing: the state of its last step
                if (cfg_.train.checkpoint_every != 0 && st_.step > checkpoint_step_) checkpoint();
                break;
            }
            const auto t0 = Clock::now();
            const bool log_row = s % cfg_.train.log_every == 0 || s == steps;
            // train.early_stop: checked on the step's loss before its update; a stop skips it
            std::function<bool(const LossParts&)> early;
            if (cfg_.train.early_stop.on())
                early = [this, s](const LossParts& lp) {
                    return st_.early.observe(cfg_.train.early_stop, s, lp.loss) !=
                           EarlyStopReason::none;
                };
            const StepOutcome so =
                train_step(*be_, cfg_, *task_, st_.model, st_.opt, batch_, s, log_row, early);
            if (!so.finite) {
                result_.status = RunStatus::diverged;
                result_.message = so.message;
                break;
            }
            st_.step = s;
            result_.steps_done = s;
            observe_train_step(so);
            timing_.seconds += seconds_since(t0);
            timing_.tokens += cfg_.train.batch_size;
            timing_.steps += 1;
            // an early stop ends the run at this step, as its last step would: a train row,
            // an evaluation, and a checkpoint when the run writes any
            const bool stopped = !so.updated;
            if (log_row || stopped) record_train_row(s, so);
            const bool eval_row = s % cfg_.train.eval_every == 0 || s == steps || stopped;
            if (eval_row) evaluate(s);
            const int64_t every = cfg_.train.checkpoint_every;
            if ((every < 0 && eval_row) || (every > 0 && s % every == 0) || (stopped && every != 0))
                checkpoint();
            if (stopped) break;
        }
        result_.stop_reason = std::string(to_string(st_.early.reason));
        rec_.flush();
        result_.wall_s = seconds_since(t_start_);
        st_.stats.summary.finish(result_.status, result_.steps_done, st_.stats.collapse,
                                 to_string(st_.early.reason));
        write_file_atomic(opts_.out_dir / "summary.csv", st_.stats.summary.csv());
        return result_;
    }

private:
    bool has_ideal() const { return !std::isnan(task_->ideal_loss()); }

    // A fresh run creates its files; a resumed one loads the checkpoint first (nothing is touched
    // when that fails), then cuts every file back to its step and appends.
    Recorder open_recorder() {
        CsvMode mode = CsvMode::truncate;
        if (opts_.resume) {
            checkpoint_load(opts_.out_dir, cfg_, st_);
            checkpoint_step_ = st_.step;
            result_.steps_done = st_.step;
            result_.final_eval_loss = st_.stats.summary.final_loss();
            result_.final_eval_accuracy = st_.stats.summary.final_accuracy();
            for (const char* f : Recorder::kFiles) csv_cut_after_step(opts_.out_dir / f, st_.step);
            // a checkpoint or summary half-written when the run was killed (the run directory
            // is locked: no other process writes here)
            remove_atomic_temps(opts_.out_dir);
            mode = CsvMode::append;
        }
        st_.stats.summary.set_ideal_loss(task_->ideal_loss());
        return Recorder(int(moe_.size()), cfg_.experts.count, G_, task_->eval_set(),
                        st_.model.moe_block_index(), has_ideal(), opts_.out_dir, mode);
    }

    // The whole training state after step st_.step; every row of that step is on disk first.
    void checkpoint() {
        rec_.flush();
        device_stats_to_host();
        checkpoint_save(opts_.out_dir, cfg_, st_);
        checkpoint_step_ = st_.step;
    }

    // The device routing path's statistics (MoeLayer::routes_on_device): the open train windows
    // (they stay open: the backend's summary goes on) and the collapse intervals' counts (added,
    // then zeroed) to the host, before a log or eval row reads them or a checkpoint saves them.
    void device_stats_to_host() {
        std::vector<int64_t> counts;
        std::vector<double> sums;
        for (size_t l = 0; l < moe_.size(); ++l) {
            MoeLayer& m = *moe_[l];
            if (!m.routes_on_device()) continue;
            m.window_download(*be_, counts, sums);
            st_.stats.train_windows[l].set_summary(counts, sums);
            m.interval_download(*be_, counts);
            st_.stats.collapse.count(int(l), std::span<const int64_t>(counts));
        }
    }

    // Statistics of one training step: each layer's window and collapse interval, the metrics.
    void observe_train_step(const StepOutcome& so) {
        StatsState& ss = st_.stats;
        const int G = G_;
        for (size_t l = 0; l < moe_.size(); ++l) {
            MoeLayer& m = *moe_[l];
            if (m.routes_on_device()) {  // the step's summary stays in the backend's memory
                m.observe_window(*be_, batch_.group.empty() ? nullptr : batch_.group.data(), G, G);
                continue;
            }
            ss.train_windows[l].observe(m.plan(), m.router_state().probs.data(), m.expert_logits(),
                                        batch_.group.data(), G, m.aux_loss(), m.z_loss_value());
            if (m.plan().weighted)  // the dense routers: the dispatch weight mass
                ss.collapse.count_weighted(int(l), m.plan().mass);
            else
                ss.collapse.count(int(l), m.plan().routed);
        }
        ss.metrics.add(so.loss, so.loss.targets);  // the accuracy's denominator: trained labels
    }

    // metrics.csv, timing.csv, layers.csv and experts.csv rows of the train split.
    void record_train_row(int64_t s, const StepOutcome& so) {
        StatsState& ss = st_.stats;
        const MetricWindow& w = ss.metrics;
        const double loss = w.loss / w.steps, task = w.task / w.steps, aux = w.aux / w.steps,
                     z = w.z / w.steps, acc = double(w.correct) / w.tokens;
        if (has_ideal())  // ideal_loss, loss_gap: eval rows only
            rec_.metrics.write_row(
                {s, "train", loss, task, aux, z, acc, so.lr, so.grad_norm, CsvCell(), CsvCell()});
        else
            rec_.metrics.write_row({s, "train", loss, task, aux, z, acc, so.lr, so.grad_norm});
        const double tps = timing_.seconds > 0 ? double(timing_.tokens) / timing_.seconds : 0.0;
        rec_.timing.write_row(
            {s, tps, 1e3 * timing_.seconds / double(timing_.steps), seconds_since(t_start_)});
        const int64_t last_tenth = cfg_.train.steps - std::max<int64_t>(1, cfg_.train.steps / 10);
        const int NL = int(moe_.size());
        device_stats_to_host();
        double drop = 0, vio = 0;
        for (int l = 0; l < NL; ++l) {
            LayerStats st = ss.train_windows[l].finish();
            if (so.updated)  // an early-stopped step had no backward pass: NaN (empty)
                router_grad_stats(moe_[l]->router_grad_task(), moe_[l]->router_grad_aux(), st);
            rec_.write_layer_rows(s, "train", l, st, moe_[l]->bias());
            if (s > last_tenth) ss.summary.observe_late_train(st);
            drop += st.drop_rate / NL;
            vio += st.max_vio / NL;
            ss.train_windows[l].reset();
            if (moe_[l]->routes_on_device()) moe_[l]->window_reset(*be_);
        }
        rec_.flush();
        Progress p;
        p.loss = w.loss / w.steps;
        p.accuracy = double(w.correct) / w.tokens;
        p.drop_rate = drop;
        p.max_vio = vio;
        p.tokens_per_s = tps;
        report(s, p);
        ss.metrics.reset();
        timing_ = TimingWindow{};
    }

    // The held-out set, in batches, at the eval capacity factor; then the eval rows.
    void evaluate(int64_t step) {
        const Batch& eval = task_->eval_set();
        const int E = eval.B, B = cfg_.train.batch_size, N = cfg_.experts.count;
        const int NL = int(moe_.size());
        Pass pass;
        pass.training = false;
        pass.step = step;
        pass.capacity_factor =
            cfg_.capacity.eval_factor > 0 ? cfg_.capacity.eval_factor : cfg_.capacity.factor;
        double loss = 0, task_loss = 0, aux = 0, z = 0;
        int64_t correct = 0, targets = 0;  // targets: the labels the loss counts (model.h)
        for (auto& w : rec_.eval_win) w.reset();
        for (auto& w : rec_.tok_win) w.reset();
        for (int start = 0; start < E; start += B) {
            const int T = std::min(B, E - start);
            pass.token_ids = eval.token_ids(start);
            pass.sequence_ids = eval.sequence_ids(start);
            const LossParts lp = st_.model.forward(*be_, eval.x.data() + size_t(start) * eval.dim,
                                                   eval.y.data() + start, T, pass);
            // each batch weighted by its trained labels (T, or the transformer's answers on modular)
            const double n = double(lp.targets);
            loss += lp.loss * n;
            task_loss += lp.task * n;
            aux += lp.aux * n;
            z += lp.z * n;
            correct += lp.correct;
            targets += lp.targets;
            for (int l = 0; l < NL; ++l) {
                const MoeLayer& m = *moe_[l];
                const float* probs = m.router_state().probs.data();
                rec_.eval_win[l].observe(m.plan(), probs, m.expert_logits(),
                                         eval.group.data() + start, G_, m.aux_loss(),
                                         m.z_loss_value());
                for (int t = 0; t < T; ++t) rec_.eval_top1[l][start + t] = top1_expert(probs, N, t);
                if (rec_.token_stats)
                    rec_.tok_win[l].observe(m.plan(), rec_.eval_top1[l].data() + start,
                                            eval.token.data() + start,
                                            eval.position.data() + start);
            }
        }
        const double n = double(targets);
        record_eval_row(step, loss / n, task_loss / n, aux / n, z / n, double(correct) / n);
    }

    // metrics.csv, layers.csv, experts.csv and specialization.csv rows of the eval split (token
    // tasks: tokens.csv and positions.csv too); the collapse events of the eval interval that ends here.
    void record_eval_row(int64_t step, double loss, double task_loss, double aux, double z,
                         double acc) {
        StatsState& ss = st_.stats;
        const int N = cfg_.experts.count;
        if (has_ideal()) {
            const double ideal = task_->ideal_loss();
            rec_.metrics.write_row({step, "eval", loss, task_loss, aux, z, acc, CsvCell(),
                                    CsvCell(), ideal, task_loss - ideal});
        } else {
            rec_.metrics.write_row(
                {step, "eval", loss, task_loss, aux, z, acc, CsvCell(), CsvCell()});
        }
        device_stats_to_host();  // the collapse intervals' counts
        std::vector<CollapseEvent> events;
        for (int l = 0; l < int(moe_.size()); ++l) {
            LayerStats st = rec_.eval_win[l].finish();
            st.flip_rate = ss.flips[l].update(rec_.eval_top1[l]);
            rec_.write_layer_rows(step, "eval", l, st, moe_[l]->bias(),
                                  rec_.token_stats ? rec_.tok_win[l].spec_nmi_token() : kNaN);
            if (rec_.token_stats) rec_.write_token_rows(step, l);
            ss.summary.observe_eval(l, st);
            for (int g = 0; g < st.num_groups; ++g)
                for (int i = 0; i < N; ++i)
                    rec_.specialization.write_row(
                        {step, rec_.blocks[l], i, g, st.group_expert[size_t(g) * N + i]});
            ss.collapse.end_interval(step, l, events);
        }
        for (const CollapseEvent& ev : events)
            rec_.events.write_row(
                {ev.step, rec_.blocks[ev.layer], ev.expert, collapse_kind_name(ev.kind)});
        ss.summary.set_final_eval(loss, acc, task_loss);
        result_.final_eval_loss = loss;
        result_.final_eval_accuracy = acc;
        rec_.flush();
        Progress p;
        p.eval = true;
        p.loss = loss;
        p.accuracy = acc;
        report(step, p);
    }

    // Hands a log or eval row to the progress display, with the step and the elapsed time.
    void report(int64_t step, Progress p) {
        if (!opts_.on_progress) return;
        p.step = step;
        p.steps = cfg_.train.steps;
        p.elapsed_s = seconds_since(t_start_);
        opts_.on_progress(p);
    }

    const Config& cfg_;
    const RunOptions& opts_;
    const Clock::time_point t_start_;
    std::unique_ptr<Backend> be_;
    std::unique_ptr<Task> task_;
    const int G_;
    TrainState st_;
    std::vector<MoeLayer*> moe_;
    RunResult result_;
    int64_t checkpoint_step_ = 0;  // the step of the newest checkpoint on disk (0: none)
    Recorder rec_;                 // after result_ and checkpoint_step_: a resume sets them
    Batch batch_;
    TimingWindow timing_;
};

}  // namespace

RunResult train_run(const Config& cfg, const RunOptions& opts) {
    return Run(cfg, opts).run();
}

}  // namespace moe
