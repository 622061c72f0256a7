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
#include "cli/help_text.h"
#include "cli/progress.h"
#include "cli/resource_check.h"
#include "config/components.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "io/atomic_file.h"
#include "io/io_error.h"
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

void print_error(const std::string& line) {
    std::fprintf(stderr, "moe-sim: error: %s\n", line.c_str());
}

std::string version_text() {
    return fmt::format("moe-sim {} (CPU: Eigen + OpenMP, {}; CUDA parts {})", MOESIM_VERSION,
                       MOESIM_CPU_TARGET, cuda_compiled() ? "compiled" : "not compiled");
}

struct CommonArgs {
    std::string config;
    std::vector<std::string> overrides;
};

void add_config_args(CLI::App* cmd, CommonArgs& a) {
    cmd->add_option("config", a.config, "YAML config file (a path)")->required()->type_name("FILE");
    cmd->add_option(
           "overrides", a.overrides,
           "Overrides, each KEY=VALUE with a dotted key path (router.k=2), after the config")
        ->expected(0, -1)
        ->type_name("KEY=VALUE");
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

// prepare_run_dir, with its failures sorted by exit code: a non-empty run directory without
// --force is bad usage (UserError, exit 2); a directory that cannot be created, read or
// cleaned (read-only, under a regular file, a file in the way) is an I/O error (IoError, exit 1).
void prepare_run_dir_or_io_error(const std::filesystem::path& dir, bool force) {
    try {
        prepare_run_dir(dir, force);
    } catch (const IoError&) {
        throw;
    } catch (const UserError& e) {
        std::error_code ec;
        const bool refused_reuse =
            !force && std::filesystem::is_directory(dir, ec) && !std::filesystem::is_empty(dir, ec);
        if (refused_reuse) throw;
        throw IoError(e.diagnostics());
    }
}

int cmd_run(const CommonArgs& a, const RunArgs& r) {
    if (r.resume && r.force)
        throw UserError("run: --resume continues a run and --force starts it again: give one");
    std::vector<std::string> overrides = a.overrides;
    if (r.threads >= 0) overrides.push_back(fmt::format("threads={}", r.threads));
    if (!r.device.empty()) overrides.push_back("device=" + r.device);
    const Config cfg = config_load_file(a.config, overrides);
    check_resources(cfg);  // before the run directory is touched
    const std::filesystem::path dir =
        r.out.empty() ? std::filesystem::path("runs") / cfg.name : std::filesystem::path(r.out);
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
        prepare_run_dir_or_io_error(dir, r.force);
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
                std::fprintf(stderr,
                             "done: %lld steps%s%s%s in %.1f s, eval accuracy %.4f; wrote %s/\n",
                             (long long)res.steps_done,
                             res.stop_reason.empty() ? "" : " (stopped early: train.early_stop.",
                             res.stop_reason.c_str(), res.stop_reason.empty() ? "" : ")",
                             res.wall_s, res.final_eval_accuracy, dir.string().c_str());
            return 0;
        case RunStatus::diverged:
            std::fprintf(
                stderr,
                "moe-sim: run diverged: %s; CSV files are intact up to the last good row in %s/\n",
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
    CLI::App app{"moe-sim: a research simulator for Mixture-of-Experts routing dynamics",
                 "moe-sim"};
    app.set_version_flag("--version", version_text());
    app.require_subcommand(1);
    app.footer(
        "\nOutput: run writes CSV files into a run directory (runs/<name> or --out), sweep into\n"
        "a sweep directory (sweeps/<name> or --out); progress and errors go to stderr; validate\n"
        "and bench print to stdout. 'moe-sim SUBCOMMAND --help' has an example of each.\n\n"
        "Example:\n  moe-sim run configs/quickstart.yaml balance.alpha=0.01\n\n" +
        std::string(exit_codes_help()));

    CommonArgs va;
    bool reference = false;
    auto* validate =
        app.add_subcommand("validate", "Print the fully resolved config, or every error in it");
    add_config_args(validate, va);
    validate->add_flag("--reference", reference,
                       "Print the reference of every config key (Markdown) instead");
    bool components = false;
    validate->add_flag("--components", components,
                       "Print the table of routers, balancers and tasks (Markdown, as in the "
                       "README) instead");
    // With --reference or --components no config file is needed.
    validate->get_option("config")->required(false);
    validate->footer(help_footer(
        "the resolved config (YAML) or the key reference (Markdown) on stdout; errors on stderr.",
        "moe-sim validate configs/quickstart.yaml router.k=1"));

    CommonArgs ra;
    RunArgs rr;
    auto* run = app.add_subcommand("run", "Train a model from a config and write CSV statistics");
    add_config_args(run, ra);
    run->add_option("--out", rr.out, "Run directory, a path (default: runs/<name>)")
        ->type_name("DIR")
        ->check(out_dir_validator("runs/<name>"));
    run->add_flag("--force", rr.force,
                  "Overwrite the outputs of a previous run in the run directory");
    run->add_flag("--resume", rr.resume,
                  "Continue an interrupted or killed run from the checkpoint in its run directory "
                  "(same config; any thread count): the files end as if it had never stopped");
    run->add_flag("--quiet,-q", rr.quiet, "No progress output");
    run->add_option(
           "--threads", rr.threads,
           "OpenMP threads, a whole number from 0 to 1024; same as threads=N. Default 0: the "
           "CPUs this process may run on (its affinity mask, capped by its cgroup's CPU quota), "
           "or OMP_NUM_THREADS")
        ->check(CLI::Range(0, 1024))
        ->type_name("N");
    run->add_option("--device", rr.device, "cpu or cuda; same as device=...")
        ->type_name("cpu|cuda");
    run->footer(help_footer(
        "the run directory (--out, default runs/<name>) gets config.yaml and metrics.csv,\n"
        "timing.csv, layers.csv, experts.csv, specialization.csv, events.csv, summary.csv\n"
        "(token tasks: tokens.csv, positions.csv, position_experts.csv; docs/metrics.md) and\n"
        "checkpoint.bin (--resume); "
        "progress and errors go to stderr.",
        "moe-sim run configs/quickstart.yaml balance.alpha=0.01 --out runs/alpha-0.01"));

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
    } catch (const IoError& e) {  // a file the system refused: exit 1 (README)
        for (const Diagnostic& d : e.diagnostics()) print_error(d.format());
        return 1;
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
