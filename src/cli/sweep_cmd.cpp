// moe-sim sweep (SPEC.md section 1, docs/sweeps.md): grids of runs on one machine, in parallel,
// sharded across a Slurm array, resumable; one summary.csv for the whole sweep.
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "backend/threads.h"
#include "cli/commands.h"
#include "cli/help_text.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "io/atomic_file.h"
#include "io/io_error.h"
#include "sweep/sweep_plan.h"
#include "sweep/sweep_runner.h"
#include "sweep/sweep_summary.h"

namespace moe {
namespace {
namespace fs = std::filesystem;

std::atomic<int> g_sweep_signal{0};
std::atomic<long long> g_sweep_first_ns{0};

// The first SIGINT/SIGTERM is forwarded to the running runs, which stop at the end of their
// step; a second one (a quarter second or more later: not the same signal delivered twice)
// exits at once, and the runs, which die with the sweep (sweep_runner.h), exit at once too.
extern "C" void on_sweep_signal(int sig) {
    struct timespec ts {};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
    const long long now = (long long)ts.tv_sec * 1'000'000'000 + ts.tv_nsec;
    int none = 0;
    if (g_sweep_signal.compare_exchange_strong(none, sig)) {
        g_sweep_first_ns.store(now);
        return;
    }
    if (now - g_sweep_first_ns.load() >= 250'000'000) _exit(130);
}

void install_sweep_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_sweep_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

struct SweepArgs {
    std::string config;
    std::vector<std::string> axes;
    std::string out;
    int jobs = 1;
    std::string shard;
    bool list = false, collect = false, force = false, quiet = false;
    int threads = 0;
};

// argv[0] as this process was invoked (for --list), else "moe-sim".
std::string invoked_as() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string first;
    if (in && std::getline(in, first, '\0') && !first.empty()) return first;
    return "moe-sim";
}

std::string exec_path() {
    std::error_code ec;
    if (fs::exists("/proc/self/exe", ec)) {
        fs::path p = fs::read_symlink("/proc/self/exe", ec);
        if (!ec && fs::exists(p, ec)) return p.string();
        return "/proc/self/exe";
    }
    return invoked_as();
}

std::string clock_text(double s) {
    long t = long(s + 0.5);
    if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
    return fmt::format("{}:{:02}", t / 60, t % 60);
}

bool key_given(const SweepPlan& plan, const std::string& key) {
    for (const std::string& k : plan.swept_keys)
        if (k == key) return true;
    for (const std::string& f : plan.fixed)
        if (f.rfind(key + "=", 0) == 0) return true;
    return false;
}

// The CONFIG argument of the children: the file itself, unless it has a sweep: section that
// `moe-sim run` refuses; then a copy without the section, in the sweep directory.
std::string child_config(const SweepPlan& plan, const fs::path& out_dir) {
    if (!plan.has_sweep_section) return plan.config_path;
    bool refused = false;
    try {
        config_load_file(plan.config_path);
    } catch (const UserError& e) {
        for (const Diagnostic& d : e.diagnostics())
            if (d.key == "sweep" || d.key.rfind("sweep.", 0) == 0) refused = true;
    }
    if (!refused) return plan.config_path;
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    const fs::path copy = out_dir / "base-config.yaml";
    write_file_atomic(copy, plan.base_text);
    return copy.string();
}

// The sweep directory must take new files (the logs, the runs, summary.csv): try one, so that a
// read-only directory is named as such before any run starts (not as "cannot start" a binary).
void check_writable(const fs::path& dir) {
    const fs::path probe = dir / fmt::format(".moe-sim-write-test-{}", long(::getpid()));
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        const int err = errno;
        throw IoError(fmt::format("sweep directory '{}' cannot be written: {}", dir.string(),
                                  std::strerror(err)));
    }
    ::close(fd);
    ::unlink(probe.c_str());
}

class SweepDisplay {
public:
    explicit SweepDisplay(bool quiet) : quiet_(quiet), tty_(isatty(2) == 1) {}
    void progress(const SweepProgress& p) {
        if (quiet_) return;
        std::string line = fmt::format("sweep: {}/{} runs done", p.done, p.total);
        std::string notes;
        auto note = [&](size_t n, const char* what) {
            if (n) notes += fmt::format("{}{} {}", notes.empty() ? "" : ", ", n, what);
        };
        note(p.skipped, "skipped");
        note(p.failed, "diverged or failed");
        note(p.interrupted, "interrupted");
        if (!notes.empty()) line += " (" + notes + ")";
        line += fmt::format(", {} running, {} elapsed", p.running, clock_text(p.elapsed_s));
        if (p.eta_s >= 0 && p.done < p.total) line += fmt::format(", ETA {}", clock_text(p.eta_s));
        if (tty_) {
            std::fprintf(stderr, "\r\033[K%s", line.c_str());
            open_ = true;
        } else if (p.done != last_done_) {
            std::fprintf(stderr, "%s\n", line.c_str());
        }
        last_done_ = p.done;
        std::fflush(stderr);
    }
    void message(const std::string& m) {
        if (open_) std::fputs("\r\033[K", stderr);  // the progress line is redrawn after
        open_ = false;
        std::fprintf(stderr, "moe-sim: %s\n", m.c_str());
    }
    void close() {
        if (open_) std::fputs("\n", stderr);
        open_ = false;
    }

private:
    bool quiet_, tty_, open_ = false;
    size_t last_done_ = size_t(-1);
};

int sweep_main(const SweepArgs& a) {
    if (a.list && a.collect) throw UserError("sweep: --list and --collect do not go together");
    const SweepPlan plan = plan_sweep(a.config, a.axes);
    const Shard shard = a.shard.empty() ? Shard{} : parse_shard(a.shard);
    const fs::path out_dir =
        a.out.empty() ? fs::path("sweeps") / plan.runs.front().config.name : fs::path(a.out);
    const size_t all = plan.runs.size();

    if (a.collect) {
        std::error_code ec;
        if (!fs::is_directory(out_dir, ec))
            throw UserError(fmt::format("sweep directory '{}' does not exist: nothing to collect",
                                        out_dir.string()));
        SweepSummaryCounts c = write_sweep_summary(plan, out_dir);
        if (!a.quiet)
            std::fprintf(
                stderr,
                "collected %zu of %zu runs into %s: %zu completed, %zu diverged, %zu interrupted, "
                "%zu failed, %zu not finished\n",
                c.rows, all, (out_dir / "summary.csv").string().c_str(), c.completed, c.diverged,
                c.interrupted, c.failed, c.missing);
        return c.completed == all ? 0 : 1;
    }

    // The runs of this shard and what their directories hold.
    std::vector<SweepJob> jobs;
    std::vector<std::string> conflicts;
    size_t total = 0, skipped = 0, skipped_diverged = 0;
    for (const PlannedRun& run : plan.runs) {
        if (!shard.contains(run.index)) continue;
        ++total;
        const fs::path dir = out_dir / run.name;
        RunDirState st = inspect_run_dir(dir, run);
        if (a.force && st.kind != RunDirState::fresh &&
            !(st.kind == RunDirState::conflict && st.problem == "exists and is not a directory"))
            st.kind = RunDirState::rerun;
        switch (st.kind) {
            case RunDirState::fresh:
                jobs.push_back({&run, false});
                break;
            case RunDirState::rerun:
                jobs.push_back({&run, true, false});
                break;
            case RunDirState::resume:
                jobs.push_back({&run, false, true});
                break;
            case RunDirState::finished:
                ++skipped;
                if (st.status != "completed") ++skipped_diverged;
                break;
            case RunDirState::conflict:
                conflicts.push_back(fmt::format("run directory '{}' {}", dir.string(), st.problem));
                break;
        }
    }
    if (!conflicts.empty()) {
        std::vector<Diagnostic> d;
        for (size_t i = 0; i < conflicts.size() && i < 10; ++i)
            d.push_back(Diagnostic{{}, 0, 0, {}, conflicts[i]});
        if (conflicts.size() > 10)
            d.push_back(Diagnostic{
                {},
                0,
                0,
                {},
                fmt::format("{} more run directories like these", conflicts.size() - 10)});
        d.push_back(Diagnostic{
            {},
            0,
            0,
            {},
            fmt::format("refusing to mix configs in one sweep directory: use another --out, "
                        "remove those directories, or --force to run them again")});
        throw UserError(std::move(d));
    }

    SweepOptions opt;
    opt.out_dir = out_dir;
    opt.exec_path = exec_path();
    opt.shown_binary = invoked_as();
    opt.jobs = a.jobs;
    const int budget = a.threads > 0 ? a.threads : default_threads();
    opt.threads_per_run =
        key_given(plan, "threads") ? 0 : std::max(1, budget / std::max(1, a.jobs));
    opt.write_summary = shard.count == 1;

    if (a.list) {
        opt.child_config = child_config(plan, out_dir);
        for (const SweepJob& j : jobs)
            std::printf("%s\n", shell_join(run_command(opt, *j.run, j.force, j.resume)).c_str());
        std::fflush(stdout);
        if (!a.quiet && skipped > 0)
            std::fprintf(stderr, "moe-sim: %zu of %zu runs%s already finished in %s (not listed)\n",
                         skipped, total,
                         shard.count > 1
                             ? fmt::format(" of shard {}/{}", shard.index, shard.count).c_str()
                             : "",
                         out_dir.string().c_str());
        return 0;
    }

    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec)
        throw IoError(fmt::format("{}: cannot create the sweep directory: {}", out_dir.string(),
                                  ec.message()));
    check_writable(out_dir);
    opt.child_config = child_config(plan, out_dir);

    install_sweep_signal_handlers();
    SweepDisplay display(a.quiet);
    SweepCallbacks cb;
    cb.progress = [&](const SweepProgress& p) { display.progress(p); };
    cb.message = [&](const std::string& m) { display.message(m); };
    SweepResult r =
        run_sweep(plan, opt, jobs, g_sweep_signal, cb, total, skipped, skipped_diverged);
    display.close();

    const size_t completed = skipped - skipped_diverged + r.completed;
    const std::string what =
        shard.count > 1 ? fmt::format("shard {}/{}", shard.index, shard.count) : "sweep";
    if (!a.quiet) {
        std::string line = fmt::format("{}: {} runs: {} completed", what, total, completed);
        if (skipped) line += fmt::format(" ({} finished before)", skipped);
        if (skipped_diverged + r.diverged)
            line += fmt::format(", {} diverged", skipped_diverged + r.diverged);
        if (r.failed) line += fmt::format(", {} failed", r.failed);
        if (r.interrupted) line += fmt::format(", {} interrupted", r.interrupted);
        size_t not_started =
            total - completed - skipped_diverged - r.diverged - r.failed - r.interrupted;
        if (not_started) line += fmt::format(", {} not started", not_started);
        std::fprintf(stderr, "%s\n", line.c_str());
        if (r.stopped)
            std::fprintf(stderr,
                         "moe-sim: sweep interrupted; run the same command again to resume\n");
        else if (shard.count > 1)
            std::fprintf(
                stderr,
                "moe-sim: when every shard has finished, gather the rows with the same command, "
                "--collect instead of --shard\n");
        else if (r.summary_written)
            std::fprintf(stderr, "summary: %s\n", (out_dir / "summary.csv").string().c_str());
        else
            std::fprintf(
                stderr, "moe-sim: the sweep summary %s was not written (see above)%s\n",
                (out_dir / "summary.csv").string().c_str(),
                fs::exists(out_dir / "summary.csv", ec) ? "; the file there is from before" : "");
    }
    if (r.stopped) return 130;
    return completed == total && (r.summary_written || !opt.write_summary) ? 0 : 1;
}

}  // namespace

Command add_sweep_command(CLI::App& app) {
    auto a = std::make_shared<SweepArgs>();
    CLI::App* cmd = app.add_subcommand(
        "sweep",
        "Run a grid of runs (KEY=V1,V2,... axes and the config's sweep: section); one summary.csv");
    cmd->add_option("config", a->config, "YAML config file, a path (may hold a sweep: section)")
        ->required()
        ->type_name("FILE");
    cmd->add_option("axes", a->axes,
                    "KEY=V1,V2,... is an axis; KEY=VALUE a fixed override for every run")
        ->expected(0, -1)
        ->type_name("KEY=V1,V2,...");
    cmd->add_option("--out", a->out, "Sweep directory, a path (default: sweeps/<name>)")
        ->type_name("DIR")
        ->check(out_dir_validator("sweeps/<name>"));
    cmd->add_option("--jobs,-j", a->jobs,
                    "Runs at once on this machine, a whole number from 1; the threads are divided "
                    "between them")
        ->check(CLI::Range(1, 1024))
        ->type_name("J");
    cmd->add_option("--shard", a->shard,
                    "I/N, two whole numbers: run only the runs whose number mod N is I (0-based: "
                    "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-(N-1))")
        ->type_name("I/N");
    cmd->add_flag(
        "--list", a->list,
        "Print the `moe-sim run` command line of every run still to do, one per line; run nothing");
    cmd->add_flag("--collect", a->collect,
                  "Only rebuild the sweep's summary.csv from the run directories that exist (after "
                  "a Slurm array)");
    cmd->add_flag("--force", a->force,
                  "Run every run again, overwriting finished and conflicting run directories");
    cmd->add_option(
           "--threads", a->threads,
           "Threads for the whole sweep, a whole number, divided between the jobs (0 = all cores)")
        ->check(CLI::Range(0, 4096))
        ->type_name("N");
    cmd->add_flag("--quiet,-q", a->quiet, "No progress output");
    cmd->footer(help_footer(
        "the sweep directory (--out, default sweeps/<name>) gets one run directory per run\n"
        "(as `moe-sim run` writes it), logs/ for runs that failed, and summary.csv with one row\n"
        "per run (docs/sweeps.md); progress goes to stderr, --list prints to stdout.",
        "moe-sim sweep configs/quickstart.yaml balance.alpha=0,0.001,0.01 seed=1,2,3 --jobs 2"));
    return Command{cmd, [a] { return sweep_main(*a); }};
}

}  // namespace moe
