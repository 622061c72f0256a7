#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "backend/device.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/resource_check.h"
#include "config/components.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "io/atomic_file.h"
#include "io/run_dir.h"
#include "tasks/setup_interrupt.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace moe {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<long long> g_first_signal_ns{0};

// The first SIGINT/SIGTERM sets g_stop: the run stops at the end of the step (or data setup
// stops within milliseconds), flushes its files and exits 130. A second one exits at once, with
// 130: every row already in a CSV file is whole (rows go out in one write), and config.yaml and
// summary.csv are replaced atomically. A second signal within kSameSignalNs of the first is the
// same signal delivered twice (by the terminal to the process group and by a sweep forwarding
// it; by Slurm to every process of a job) and is not counted.
constexpr long long kSameSignalNs = 250'000'000;
long long monotonic_ns() {
    struct timespec ts {};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
    return (long long)ts.tv_sec * 1'000'000'000 + ts.tv_nsec;
}
extern "C" void on_signal(int) {
    const long long now = monotonic_ns();
    if (!g_stop.exchange(true)) {
        g_first_signal_ns.store(now);
        return;
    }
    if (now - g_first_signal_ns.load() >= kSameSignalNs) _exit(130);
}

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

// An exception's text as one line of stderr: line breaks become spaces.
std::string one_line(std::string text) {
    for (char& c : text)
        if (c == '\n' || c == '\r') c = ' ';
    return text;
}

void print_error(const std::string& line) { std::fprintf(stderr, "moe-sim: error: %s\n", line.c_str()); }

std::string version_text() {
    return fmt::format("moe-sim {} (CPU: Eigen + OpenMP, {}; CUDA parts {})", MOESIM_VERSION,
                       MOESIM_CPU_TARGET,
                       cuda_compiled() ? "compiled, backend not built yet" : "not compiled");
}

struct CommonArgs {
    std::string config;
    std::vector<std::string> overrides;
};

void add_config_args(CLI::App* cmd, CommonArgs& a) {
    cmd->add_option("config", a.config, "YAML config file")->required();
    cmd->add_option("overrides", a.overrides, "KEY=VALUE overrides with dotted key paths")
        ->expected(0, -1);
}

int cmd_validate(const CommonArgs& a) {
    const Config cfg = config_load_file(a.config, a.overrides);
    check_resources(cfg);  // a config that cannot fit on this machine is an error here too
    std::fputs(config_to_yaml(cfg).c_str(), stdout);
    return 0;
}

struct RunArgs {
    std::string out;
    bool force = false, quiet = false, resume = false;
    int threads = -1;
    std::string device;
};

int cmd_run(const CommonArgs& a, const RunArgs& r) {
    if (r.resume && r.force)
        throw UserError("run: --resume continues a run and --force starts it again: give one");
    std::vector<std::string> overrides = a.overrides;
    if (r.threads >= 0) overrides.push_back(fmt::format("threads={}", r.threads));
    if (!r.device.empty()) overrides.push_back("device=" + r.device);
    const Config cfg = config_load_file(a.config, overrides);
    check_resources(cfg);  // before the run directory is touched
    const std::filesystem::path dir = r.out.empty() ? std::filesystem::path("runs") / cfg.name
                                                    : std::filesystem::path(r.out);
    int64_t resume_step = 0;
    if (r.resume) {
        // A run to continue: its directory, its checkpoint, the same config (exit 2 otherwise);
        // nothing in the directory is touched before the checkpoint checked out.
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec))
            throw UserError("run --resume: run directory '" + dir.string() +
                            "' does not exist; there is nothing to resume");
    }
    // Held until the process exits: no other run writes into this directory meanwhile.
    const RunDirLock lock(dir);
    if (r.resume) {
        resume_step = checkpoint_verify(dir, cfg);
        if (!r.quiet)
            std::fprintf(stderr, "resuming %s/ from its checkpoint of step %lld\n",
                         dir.string().c_str(), (long long)resume_step);
    } else {
        prepare_run_dir(dir, r.force);
        write_file_atomic(dir / "config.yaml", config_to_yaml(cfg));
    }

    install_signal_handlers();
    ProgressDisplay progress(r.quiet);
    RunOptions opts;
    opts.out_dir = dir;
    opts.resume = r.resume;
    opts.stop = &g_stop;
    opts.on_progress = [&](const Progress& p) { progress.update(p); };
    set_setup_stop_flag(&g_stop);
    RunResult res;
    try {
        res = train_run(cfg, opts);
    } catch (const SetupInterrupted&) {
        progress.finish();
        std::fprintf(stderr,
                     "moe-sim: interrupted during data setup, before the first step; %s/ holds "
                     "config.yaml only\n",
                     dir.string().c_str());
        return 130;
    } catch (const UserError& e) {
        // The config was valid: what fails now is the run itself (an unwritable file, a full
        // disk), exit code 1 (SPEC.md).
        progress.finish();
        for (const Diagnostic& d : e.diagnostics()) print_error(d.format());
        return 1;
    } catch (...) {
        progress.finish();  // end the progress line before cli_main reports the error
        throw;
    }
    progress.finish();
    switch (res.status) {
        case RunStatus::completed:
            if (!r.quiet)
                std::fprintf(stderr, "done: %lld steps in %.1f s, eval accuracy %.4f; wrote %s/\n",
                             (long long)res.steps_done, res.wall_s, res.final_eval_accuracy,
                             dir.string().c_str());
            return 0;
        case RunStatus::diverged:
            std::fprintf(stderr, "moe-sim: run diverged: %s; CSV files are intact up to the last good row in %s/\n",
                         res.message.c_str(), dir.string().c_str());
            return 1;
        case RunStatus::interrupted:
            std::fprintf(stderr, "moe-sim: interrupted after %lld steps; files flushed in %s/%s\n",
                         (long long)res.steps_done, dir.string().c_str(),
                         checkpoint_exists(dir) ? "; run again with --resume to continue" : "");
            return 130;
    }
    return 1;
}

}  // namespace

int cli_main(int argc, char** argv) {
    CLI::App app{"moe-sim: a research simulator for Mixture-of-Experts routing dynamics", "moe-sim"};
    app.set_version_flag("--version", version_text());
    app.require_subcommand(1);

    CommonArgs va;
    bool reference = false;
    auto* validate = app.add_subcommand("validate", "Print the fully resolved config, or every error in it");
    add_config_args(validate, va);
    validate->add_flag("--reference", reference,
                       "Print the reference of every config key (Markdown) instead");
    bool components = false;
    validate->add_flag("--components", components,
                       "Print the table of routers, balancers and tasks (Markdown, as in the "
                       "README) instead");
    // With --reference or --components no config file is needed.
    validate->get_option("config")->required(false);

    CommonArgs ra;
    RunArgs rr;
    auto* run = app.add_subcommand("run", "Train a model from a config and write CSV statistics");
    add_config_args(run, ra);
    run->add_option("--out", rr.out, "Run directory (default: runs/<name>)");
    run->add_flag("--force", rr.force, "Overwrite the outputs of a previous run in the run directory");
    run->add_flag("--resume", rr.resume,
                  "Continue an interrupted or killed run from the checkpoint in its run directory "
                  "(same config; any thread count): the files end as if it had never stopped");
    run->add_flag("--quiet,-q", rr.quiet, "No progress output");
    run->add_option(
           "--threads", rr.threads,
           "OpenMP threads; same as threads=N. Default 0: the CPUs this process may run on "
           "(its affinity mask, capped by its cgroup's CPU quota), or OMP_NUM_THREADS")
        ->check(CLI::Range(0, 1024));
    run->add_option("--device", rr.device, "cpu | cuda; same as device=...");

    // Subcommands that live in their own files (cli/commands.h).
    std::vector<Command> commands;
    add_extra_commands(app, commands);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::CallForAllHelp&) {
        std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
        return 0;
    } catch (const CLI::CallForVersion&) {
        std::printf("%s\n", version_text().c_str());
        return 0;
    } catch (const CLI::ParseError& e) {
        print_error(fmt::format("{} (run 'moe-sim --help' for usage)", e.what()));
        return 2;
    }

    try {
        if (validate->parsed()) {
            if (reference) {
                std::fputs(config_reference_markdown().c_str(), stdout);
                return 0;
            }
            if (components) {
                std::fputs(components_markdown().c_str(), stdout);
                return 0;
            }
            if (va.config.empty()) {
                print_error("validate: a CONFIG file is required (or --reference, --components)");
                return 2;
            }
            return cmd_validate(va);
        }
        if (run->parsed()) return cmd_run(ra, rr);
        for (const Command& c : commands)
            if (c.app->parsed()) return c.run();
    } catch (const UserError& e) {
        for (const Diagnostic& d : e.diagnostics()) print_error(d.format());
        return 2;
    } catch (const std::logic_error& e) {
        // A failed MOESIM_CHECK or another broken invariant: a bug in moe-sim, not in the input.
        std::fprintf(stderr, "moe-sim: internal error: %s\n", one_line(e.what()).c_str());
        return 1;
    } catch (const std::exception& e) {
        print_error(fmt::format("unexpected failure: {}", one_line(e.what())));
        return 1;
    }
    return 2;
}

}  // namespace moe
