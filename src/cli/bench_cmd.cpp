// `moe-sim bench CONFIG [KEY=VALUE ...] [--steps N] [--warmup N] [--csv] [--threads N]`
// (SPEC.md section 1; docs/performance.md).
//
// Times full training steps — exactly train_step(), what `moe-sim run` executes per step: the
// batch from the task, forward, backward, gradient clipping, the optimizer, bias balancing — with
// no CSV logging and no evaluation: the step of `run` between two log rows (at a log row, `run`
// also splits the router gradient into its task and auxiliary parts for the statistics). After --warmup untimed steps, each of --steps steps is timed
// on its own with steady_clock. Reports the median, min and max ms per step, tokens per second
// (at the median), the counted FLOPs of one step (cli/bench_flops.h: matrix products of forward
// and backward, experts as actually dispatched, averaged over the timed steps) and the achieved
// GFLOP/s (counted FLOPs / median step time), plus peak resident memory against the counted
// parameters + gradients + optimizer state + activations.
// --csv prints one header line and one row instead, columns:
//   experts.count,router.k,experts.d_ff,model.d_model,train.batch_size,threads,
//   ms_per_step_median,ms_per_step_min,ms_per_step_max,tokens_per_s,gflop_per_step,gflops,
//   optimizer_ms,optimizer_gbs,peak_gflops,pct_of_peak,stream_gbs,optimizer_pct_of_stream
// (stream_gbs: the triad over the optimizer's working set, the fair yardstick for its pass)
// (the last four empty without --ceiling).
//
// --ceiling first measures this machine's limits (backend/machine_probe.h): the FP32 FMA peak of
// one thread and of the run's threads, and the STREAM triad bandwidth; the report then gives the
// step's GFLOP/s as a share of that peak and the optimizer pass's GB/s (timed on its own: the
// update of every parameter, its bytes counted per optimizer) as a share of the bandwidth. Without
// a config, --ceiling prints the machine's limits only.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/backend.h"
#include "backend/machine_probe.h"
#include "backend/threads.h"
#include "cli/bench_flops.h"
#include "cli/commands.h"
#include "cli/help_text.h"
#include "cli/resource_check.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "model/model.h"
#include "tasks/task.h"
#include "train/optimizer.h"
#include "train/train_step.h"

namespace moe {

namespace {

struct BenchArgs {
    std::string config;
    std::vector<std::string> overrides;
    int steps = 20;
    int warmup = 3;
    int threads = -1;
    bool csv = false;
    bool ceiling = false;
};

// Bytes one optimizer update moves per parameter: Adam/AdamW read p, g, m, v and write p, m, v and
// the zeroed g (8 floats); SGD reads p, g and writes p, g (4), plus m read and written with
// momentum; NGD reads g once more for its norms (5). The main group's optimizer only.
double optimizer_bytes_per_param(const TrainConfig& t) {
    switch (t.optimizer) {
        case OptimizerKind::adam:
        case OptimizerKind::adamw:
            return 8 * sizeof(float);
        case OptimizerKind::sgd:
            return (t.momentum != 0.0 ? 6 : 4) * sizeof(float);
        case OptimizerKind::ngd:  // g read for its norms, then p, g read and written
            return 5 * sizeof(float);
    }
    return 0.0;
}

struct Ceiling {
    FmaPeak fma;
    double stream_gbs = 0.0;      // the triad far beyond the caches (3 x 128 MiB)
    double stream_opt_gbs = 0.0;  // the triad over the optimizer's working set (0: not measured)
    double opt_set_bytes = 0.0;
    std::string cpu;
};

// opt_set_bytes > 0: also the triad over that many bytes (three arrays of a third each).
Ceiling measure_ceiling(int threads, double opt_set_bytes = 0.0) {
    Ceiling c;
    c.cpu = cpu_model_name();
    c.fma = probe_fma_peak(threads);
    c.stream_gbs = probe_stream_gbs(threads);
    if (opt_set_bytes > 0) {
        c.opt_set_bytes = opt_set_bytes;
        c.stream_opt_gbs = probe_stream_gbs(
            threads, std::max<size_t>(size_t(opt_set_bytes / (3 * sizeof(float))), 1024));
    }
    return c;
}

std::string ceiling_text(const Ceiling& c) {
    std::string opt;
    if (c.opt_set_bytes > 0)
        opt = fmt::format(", {:.1f} GB/s over the optimizer's {:.2f} MiB{}", c.stream_opt_gbs,
                          c.opt_set_bytes / (1 << 20),
                          c.opt_set_bytes < double(1 << 20) * c.fma.threads
                              ? " (cache-resident and short: fork/join costs dominate both, so "
                                "the optimizer's percentage says little)"
                              : "");
    return fmt::format(
        "  machine:        {}; FP32 FMA peak {:.1f} GFLOP/s on 1 thread, {:.1f} on {} ({}-bit "
        "vectors, this build's widest); STREAM triad {:.1f} GB/s on {} thread(s) (3 x 128 "
        "MiB){}\n",
        c.cpu, c.fma.gflops_one, c.fma.gflops_all, c.fma.threads, c.fma.vector_bits, c.stream_gbs,
        c.fma.threads, opt);
}

double peak_rss_bytes() {
    struct rusage ru {};
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return double(ru.ru_maxrss) * 1024.0;  // Linux: KiB
}

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run_bench(const BenchArgs& a) {
    if (a.config.empty()) {
        if (!a.ceiling)
            throw UserError(
                "bench: a config file is needed (or --ceiling alone for the machine's limits)");
        const Ceiling c = measure_ceiling(a.threads > 0 ? a.threads : default_threads());
        std::fputs(("moe-sim bench --ceiling\n" + ceiling_text(c)).c_str(), stdout);
        return 0;
    }
    std::vector<std::string> overrides = a.overrides;
    if (a.threads >= 0) overrides.push_back(fmt::format("threads={}", a.threads));
    const Config cfg = config_load_file(a.config, overrides);
    check_resources(cfg);

    std::unique_ptr<Backend> be = backend_create(cfg.device, cfg.threads);
    std::unique_ptr<Task> task = task_create(cfg);
    const int T = cfg.train.batch_size;
    if (a.ceiling && cfg.device != Device::cpu)
        throw UserError(
            "bench --ceiling measures the CPU's limits; it is not built for device: cuda yet "
            "(run it without --ceiling)");
    Model model(cfg, task->input_dim(), task->num_classes(), T, be.get());
    Optimizer opt(cfg.train, model.params().size(), cfg.experts.count, be.get());
    Batch batch;

    std::vector<double> ms;
    ms.reserve(size_t(a.steps));
    double assignments = 0.0;  // processed assignments, summed over MoE layers and timed steps
    const int64_t total = int64_t(a.warmup) + a.steps;
    for (int64_t s = 1; s <= total; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        const StepOutcome out = train_step(*be, cfg, *task, model, opt, batch, s, false);
        be->synchronize();  // a device's queued work belongs to this step
        const auto t1 = std::chrono::steady_clock::now();
        if (!out.finite) {
            std::fprintf(stderr, "moe-sim: bench: the run diverged: %s\n", out.message.c_str());
            return 1;
        }
        if (s > a.warmup) {
            ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            for (MoeLayer* layer : model.moe_layers()) assignments += layer->plan().assignments();
        }
    }
    // The optimizer pass alone: the same update on the same buffers, timed step by step (the
    // gradients it zeroes are refilled with a constant first, outside the timing).
    std::vector<double> opt_ms;
    {
        ParamStore& ps = model.params();
        const std::vector<float> fill(ps.grad().size(), 1e-3f);
        for (int r = 0; r < std::max(5, std::min(a.steps, 20)); ++r) {
            ps.grad().assign_from(fill.data());
            be->synchronize();
            const auto t0 = std::chrono::steady_clock::now();
            opt.step(*be, ps, 0.0f, total + 1 + r);
            be->synchronize();
            const auto t1 = std::chrono::steady_clock::now();
            opt_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
    }
    const double opt_med = median_of(opt_ms);
    const double opt_gbs = optimizer_bytes_per_param(cfg.train) * double(model.params().size()) /
                           (opt_med * 1e-3) * 1e-9;
    Ceiling ceil;
    if (a.ceiling)
        ceil = measure_ceiling(
            be->threads(), optimizer_bytes_per_param(cfg.train) * double(model.params().size()));
    const double mean_assign = assignments / double(a.steps);
    const double med = median_of(ms);
    const double mn = *std::min_element(ms.begin(), ms.end());
    const double mx = *std::max_element(ms.begin(), ms.end());
    const double tokens_per_s = double(T) / (med * 1e-3);
    const BenchFlops fl = bench_flops(cfg, task->input_dim(), task->num_classes(), T, mean_assign);
    const double gflop = fl.total() * 1e-9;
    const double gflops = gflop / (med * 1e-3);
    const int threads = be->threads();

    if (a.csv) {
        std::printf(
            "experts.count,router.k,experts.d_ff,model.d_model,train.batch_size,threads,"
            "ms_per_step_median,ms_per_step_min,ms_per_step_max,tokens_per_s,"
            "gflop_per_step,gflops,optimizer_ms,optimizer_gbs,peak_gflops,pct_of_peak,"
            "stream_gbs,optimizer_pct_of_stream\n");
        const std::string ceil_cells =
            a.ceiling ? fmt::format("{:.2f},{:.1f},{:.2f},{:.1f}", ceil.fma.gflops_all,
                                    100.0 * gflops / ceil.fma.gflops_all, ceil.stream_opt_gbs,
                                    100.0 * opt_gbs / ceil.stream_opt_gbs)
                      : std::string(",,,");
        std::printf("%s,%s,%s,%s,%s,%d,%.3f,%.3f,%.3f,%.1f,%.6f,%.3f,%.4f,%.2f,%s\n",
                    config_value_string(cfg, "experts.count").c_str(),
                    config_value_string(cfg, "router.k").c_str(),
                    config_value_string(cfg, "experts.d_ff").c_str(),
                    config_value_string(cfg, "model.d_model").c_str(),
                    config_value_string(cfg, "train.batch_size").c_str(), threads, med, mn, mx,
                    tokens_per_s, gflop, gflops, opt_med, opt_gbs, ceil_cells.c_str());
        std::fflush(stdout);
        return 0;
    }

    const int n_moe = int(model.moe_layers().size());
    // the assignments a step routes per MoE layer: T k; the dense routers: every token on every
    // expert (soft, T N), or N S slot rows (soft_slots)
    double per_layer = double(T) * cfg.router.k;
    if (cfg.router.type == RouterType::soft) per_layer = double(T) * cfg.experts.count;
    if (cfg.router.type == RouterType::soft_slots)
        per_layer = double(cfg.experts.count) * cfg.router.soft_slots.slots;
    const double slots = per_layer * n_moe;
    const BenchMemory mem = bench_memory(cfg, task->input_dim(), task->num_classes(), T,
                                         mean_assign, model.params().size(), opt.state_floats());
    const double mib = 1.0 / (1024.0 * 1024.0);
    const double rss = peak_rss_bytes();
    std::string out;
    out += fmt::format(
        "moe-sim bench {}: {} experts, k={}, d_ff={}, d_model={}, {} layer(s), "
        "{} tokens/step, {} thread(s), {}\n",
        a.config, cfg.experts.count, cfg.router.k, cfg.experts.d_ff, cfg.model.d_model,
        cfg.model.layers, T, threads, to_string(cfg.device));
    out += fmt::format("  steps:          {} timed after {} warm-up\n", a.steps, a.warmup);
    out += fmt::format("  ms per step:    median {:.3f}  min {:.3f}  max {:.3f}\n", med, mn, mx);
    out += fmt::format("  tokens/s:       {:.0f}\n", tokens_per_s);
    out += fmt::format(
        "  GFLOP per step: {:.4f} counted (embed {:.4f}, router {:.4f}, experts "
        "{:.4f}, shared {:.4f}, dense {:.4f}, head {:.4f})\n",
        gflop, fl.embed * 1e-9, fl.router * 1e-9, fl.experts * 1e-9, fl.shared * 1e-9,
        fl.dense * 1e-9, fl.head * 1e-9);
    if (cfg.model.kind == ModelKind::transformer)
        out += fmt::format(
            "                  and attention {:.4f} (Q, K, V, O projections, causal scores)\n",
            fl.attention * 1e-9);
    if (n_moe > 0)
        out += fmt::format(
            "  dispatched:     {:.1f} of {:.0f} assignments per step processed "
            "({:.2f}% dropped)\n",
            mean_assign, slots, slots > 0 ? 100.0 * (1.0 - mean_assign / slots) : 0.0);
    out += fmt::format("  GFLOP/s:        {:.2f} achieved (counted FLOPs / median step time){}\n",
                       gflops,
                       a.ceiling ? fmt::format(": {:.1f}% of the FMA peak of {} thread(s)",
                                               100.0 * gflops / ceil.fma.gflops_all, threads)
                                 : std::string());
    out += fmt::format(
        "  optimizer:      {:.3f} ms per update alone (median), {:.1f} GB/s counted ({:.0f} "
        "bytes per parameter){}\n",
        opt_med, opt_gbs, optimizer_bytes_per_param(cfg.train),
        a.ceiling ? fmt::format(": {:.1f}% of the STREAM triad over the same bytes",
                                100.0 * opt_gbs / ceil.stream_opt_gbs)
                  : std::string());
    if (a.ceiling) out += ceiling_text(ceil);
    out += fmt::format(
        "  memory:         peak RSS {:.1f} MiB; counted {:.1f} MiB (params {:.1f}, "
        "grads {:.1f}, optimizer {:.1f}, activations {:.1f})\n",
        rss * mib, mem.total() * mib, mem.params * mib, mem.grads * mib, mem.optimizer * mib,
        mem.activations * mib);
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
    auto args = std::make_shared<BenchArgs>();
    CLI::App* cmd = app.add_subcommand(
        "bench", "Time full training steps (no CSV, no evaluation): ms/step, tokens/s, GFLOP/s");
    cmd->add_option("config", args->config,
                    "YAML config file (a path, or presets/NAME); optional with --ceiling")
        ->type_name("FILE");
    cmd->add_option(
           "overrides", args->overrides,
           "Overrides, each KEY=VALUE with a dotted key path (router.k=2), after the config")
        ->expected(0, -1)
        ->type_name("KEY=VALUE");
    cmd->add_option("--steps", args->steps, "Timed steps, a whole number from 1 (default 20)")
        ->check(CLI::Range(1, 1000000))
        ->type_name("N");
    cmd->add_option("--warmup", args->warmup,
                    "Untimed warm-up steps first, a whole number (default 3)")
        ->check(CLI::Range(0, 1000000))
        ->type_name("N");
    cmd->add_option(
           "--threads", args->threads,
           "OpenMP threads, a whole number from 0 to 1024 (0 = the CPUs this process may run "
           "on); same as threads=N")
        ->check(CLI::Range(0, 1024))
        ->type_name("N");
    cmd->add_flag("--csv", args->csv,
                  "Print one CSV header line and one row instead of the report");
    cmd->add_flag("--ceiling", args->ceiling,
                  "Also measure this machine's FP32 FMA peak and memory bandwidth (a few seconds) "
                  "and report the step's GFLOP/s and the optimizer's GB/s as shares of them; "
                  "without a config, print only those limits");
    cmd->footer(
        help_footer("a report (or with --csv one header line and one row) on stdout; no files.",
                    "moe-sim bench configs/quickstart.yaml experts.count=64 --steps 50"));
    return Command{cmd, [args] { return run_bench(*args); }};
}

}  // namespace moe
