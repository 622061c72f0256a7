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
#include "io/csv_writer.h"
#include "model/model.h"
#include "stats/routing_stats.h"
#include "tasks/task.h"
#include "train/optimizer.h"
#include "train/summary.h"
#include "train/train_step.h"

namespace moe {

std::string_view to_string(RunStatus s) {
    switch (s) {
        case RunStatus::completed: return "completed";
        case RunStatus::diverged: return "diverged";
        case RunStatus::interrupted: return "interrupted";
    }
    return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Everything one run holds besides the model: the statistics windows and the CSV files.
struct Recorder {
    std::vector<LayerWindow> train_win, eval_win;
    std::vector<FlipTracker> flips;
    CollapseTracker collapse;
    std::vector<std::vector<int64_t>> interval_counts;   // (layers, N) since the last eval
    std::vector<std::vector<int>> eval_top1;              // (layers, eval tokens)
    std::vector<int> blocks;                              // block index of each MoE layer
    CsvWriter metrics, layers, experts, specialization, events;
    std::vector<CsvCell> row;

    Recorder(int NL, int N, int G, int E, std::vector<int> blocks_, const std::filesystem::path& dir)
        : train_win(NL, LayerWindow(N, G)),
          eval_win(NL, LayerWindow(N, G)),
          flips(NL),
          collapse(NL, N),
          interval_counts(NL, std::vector<int64_t>(N, 0)),
          eval_top1(NL, std::vector<int>(E, 0)),
          blocks(std::move(blocks_)),
          metrics(dir / "metrics.csv", {"step", "split", "loss", "task_loss", "aux_loss", "z_loss",
                                        "accuracy", "lr", "grad_norm", "tokens_per_s"}),
          experts(dir / "experts.csv", {"step", "split", "layer", "expert", "load", "tokens",
                                        "processed", "dropped", "importance", "bias"}),
          specialization(dir / "specialization.csv", {"step", "layer", "expert", "group", "tokens"}),
          events(dir / "events.csv", {"step", "layer", "expert", "event"}) {
        std::vector<std::string> h = {"step", "split", "layer"};
        for (auto c : kLayerStatColumns) h.emplace_back(c);
        layers = CsvWriter(dir / "layers.csv", h);
    }

    void write_layer_rows(int64_t step, std::string_view split, int l, const LayerStats& st,
                          const float* bias) {
        row.clear();
        row.emplace_back(step);
        row.emplace_back(split);
        row.emplace_back(blocks[l]);
        for (double v : layer_stat_values(st)) row.emplace_back(v);
        layers.write_row(row);
        for (int i = 0; i < int(st.experts.size()); ++i) {
            const ExpertStats& e = st.experts[i];
            const double load = st.num_tokens > 0 ? e.load : kNaN;
            experts.write_row({step, split, blocks[l], i, load, e.tokens, e.processed, e.dropped,
                               st.num_tokens > 0 ? e.importance : kNaN, bias[i]});
        }
    }
    void flush() {
        metrics.flush();
        layers.flush();
        experts.flush();
        specialization.flush();
        events.flush();
    }
};

double dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
    return s;
}

}  // namespace

RunResult train_run(const Config& cfg, const RunOptions& opts) {
    const auto t_start = Clock::now();
    RunResult result;
    auto be = backend_create(cfg.device, cfg.threads);
    auto task = task_create(cfg);
    const int B = cfg.train.batch_size;
    const int N = cfg.experts.count;
    const int G = task->num_groups();
    const Batch& eval = task->eval_set();
    const int E = eval.B;
    Model model(cfg, task->input_dim(), task->num_classes(), B);
    Optimizer opt(cfg.train, model.params().size());
    std::vector<MoeLayer*> moe = model.moe_layers();
    const int NL = int(moe.size());
    Recorder rec(NL, N, G, E, model.moe_block_index(), opts.out_dir);
    SummaryBuilder summary(cfg, NL);

    const double train_factor = cfg.capacity.factor;
    const double eval_factor = cfg.capacity.eval_factor > 0 ? cfg.capacity.eval_factor : train_factor;
    const int64_t steps = cfg.train.steps;
    const int64_t last_tenth = steps - std::max<int64_t>(1, steps / 10);

    Batch batch;
    // Sums over the current log window.
    double w_loss = 0, w_task = 0, w_aux = 0, w_z = 0, w_time = 0;
    int64_t w_correct = 0, w_tokens = 0, w_steps = 0;
    double tokens_total = 0, train_time_total = 0;

    // Hands a log or eval row to the progress display, with the step and the elapsed time.
    auto report = [&](int64_t step, Progress p) {
        if (!opts.on_progress) return;
        p.step = step;
        p.steps = steps;
        p.elapsed_s = seconds_since(t_start);
        opts.on_progress(p);
    };

    auto evaluate = [&](int64_t step) {
        double loss = 0, task_loss = 0, aux = 0, z = 0;
        int64_t correct = 0;
        for (auto& w : rec.eval_win) w.reset();
        for (int start = 0; start < E; start += B) {
            const int T = std::min(B, E - start);
            StepInfo info{false, step, eval_factor};
            const LossParts lp = model.forward(*be, eval.x.data() + size_t(start) * eval.dim,
                                               eval.y.data() + start, T, info);
            loss += lp.loss * T;
            task_loss += lp.task * T;
            aux += lp.aux * T;
            z += lp.z * T;
            correct += lp.correct;
            for (int l = 0; l < NL; ++l) {
                const RoutingPlan& plan = moe[l]->plan();
                rec.eval_win[l].observe(plan, plan.probs.data(), moe[l]->logits(),
                                        eval.group.data() + start, G, moe[l]->aux_loss(),
                                        moe[l]->z_loss_value());
                for (int t = 0; t < T; ++t) rec.eval_top1[l][start + t] = top1_expert(plan, t);
            }
        }
        const double acc = double(correct) / E;
        rec.metrics.write_row({step, "eval", loss / E, task_loss / E, aux / E, z / E, acc,
                               CsvCell(), CsvCell(), CsvCell()});
        std::vector<CollapseEvent> events;
        for (int l = 0; l < NL; ++l) {
            LayerStats st = rec.eval_win[l].finish();
            st.flip_rate = rec.flips[l].update(rec.eval_top1[l]);
            rec.write_layer_rows(step, "eval", l, st, moe[l]->bias());
            summary.observe_eval(l, st);
            for (int g = 0; g < st.num_groups; ++g)
                for (int i = 0; i < N; ++i)
                    rec.specialization.write_row(
                        {step, rec.blocks[l], i, g, st.group_expert[size_t(g) * N + i]});
            // Collapse: training load over the eval interval that ends here.
            int64_t total = 0;
            for (int64_t c : rec.interval_counts[l]) total += c;
            if (total > 0) {
                std::vector<double> load(N);
                for (int i = 0; i < N; ++i) load[i] = double(rec.interval_counts[l][i]) / total;
                rec.collapse.observe(step, l, load, events);
            }
            std::fill(rec.interval_counts[l].begin(), rec.interval_counts[l].end(), 0);
        }
        for (const CollapseEvent& ev : events)
            rec.events.write_row(
                {ev.step, rec.blocks[ev.layer], ev.expert, collapse_kind_name(ev.kind)});
        summary.set_final_eval(loss / E, acc);
        result.final_eval_loss = loss / E;
        result.final_eval_accuracy = acc;
        rec.flush();
        Progress p;
        p.eval = true;
        p.loss = loss / E;
        p.accuracy = acc;
        report(step, p);
    };

    for (int64_t s = 1; s <= steps; ++s) {
        if (opts.stop && opts.stop->load()) {
            result.status = RunStatus::interrupted;
            break;
        }
        const auto t0 = Clock::now();
        const bool log_row = s % cfg.train.log_every == 0 || s == steps;
        const StepOutcome so = train_step(*be, cfg, *task, model, opt, batch, s, log_row);
        if (!so.finite) {
            result.status = RunStatus::diverged;
            result.message = so.message;
            break;
        }
        const LossParts& lp = so.loss;
        const double gnorm = so.grad_norm, lr = so.lr;
        for (int l = 0; l < NL; ++l) {
            const RoutingPlan& plan = moe[l]->plan();
            rec.train_win[l].observe(plan, plan.probs.data(), moe[l]->logits(),
                                     batch.group.data(), G, moe[l]->aux_loss(),
                                     moe[l]->z_loss_value());
            for (int i = 0; i < N; ++i) rec.interval_counts[l][i] += plan.routed[i];
        }
        const double dt = seconds_since(t0);
        w_loss += lp.loss;
        w_task += lp.task;
        w_aux += lp.aux;
        w_z += lp.z;
        w_correct += lp.correct;
        w_tokens += B;
        w_steps += 1;
        w_time += dt;
        tokens_total += B;
        train_time_total += dt;
        result.steps_done = s;

        if (log_row) {
            const double tps = w_time > 0 ? double(w_tokens) / w_time : 0.0;
            rec.metrics.write_row({s, "train", w_loss / w_steps, w_task / w_steps, w_aux / w_steps,
                                   w_z / w_steps, double(w_correct) / w_tokens, lr, gnorm, tps});
            double drop = 0, vio = 0;
            for (int l = 0; l < NL; ++l) {
                LayerStats st = rec.train_win[l].finish();
                // Gradient interference on the router at this step (METRICS.md).
                const auto& gt = moe[l]->router_grad_task();
                const auto& ga = moe[l]->router_grad_aux();
                const double nt = std::sqrt(dot(gt, gt)), na = std::sqrt(dot(ga, ga));
                st.router_grad_task = nt;
                st.router_grad_aux = na;
                st.router_grad_cos = nt > 0 && na > 0 ? dot(gt, ga) / (nt * na) : kNaN;
                rec.write_layer_rows(s, "train", l, st, moe[l]->bias());
                if (s > last_tenth) summary.observe_late_train(st);
                drop += st.drop_rate / NL;
                vio += st.max_vio / NL;
                rec.train_win[l].reset();
            }
            rec.flush();
            Progress p;
            p.loss = w_loss / w_steps;
            p.accuracy = double(w_correct) / w_tokens;
            p.drop_rate = drop;
            p.max_vio = vio;
            p.tokens_per_s = tps;
            report(s, p);
            w_loss = w_task = w_aux = w_z = w_time = 0;
            w_correct = w_tokens = w_steps = 0;
        }
        if (s % cfg.train.eval_every == 0 || s == steps) evaluate(s);
    }

    rec.flush();
    result.wall_s = seconds_since(t_start);
    summary.finish(result.status, result.steps_done, rec.collapse, result.wall_s,
                   train_time_total > 0 ? tokens_total / train_time_total : 0.0);
    write_file_atomic(opts.out_dir / "summary.csv", summary.csv());
    return result;
}

}  // namespace moe
