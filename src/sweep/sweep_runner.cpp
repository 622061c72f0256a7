// The job runner of a sweep (sweep_runner.h): child processes started with fork and exec (they
// die with the sweep), reaped with waitpid, signals forwarded.
#include "sweep/sweep_runner.h"

#include "train/checkpoint.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "config/config_error.h"
#include "config/config_load.h"
#include "sweep/sweep_summary.h"

extern char** environ;

namespace moe {
namespace fs = std::filesystem;

namespace {

// The keys (the thread count aside) whose values differ, as "key: A here, B in this sweep".
std::string config_difference(const Config& old_cfg, const Config& new_cfg) {
    std::string out;
    int n = 0;
    for (const std::string& key : config_keys()) {
        if (key == "threads") continue;
        std::string a = config_value_string(old_cfg, key), b = config_value_string(new_cfg, key);
        if (a == b) continue;
        if (++n > 3) {
            out += ", ...";
            break;
        }
        out +=
            fmt::format("{}{} is {} there, {} in this sweep", out.empty() ? "" : "; ", key, a, b);
    }
    return out;
}

std::string last_line(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::string line, last;
    while (std::getline(in, line))
        if (!line.empty()) last = line;
    if (last.size() > 300) last = last.substr(0, 300) + "...";
    return last;
}

}  // namespace

RunDirState inspect_run_dir(const fs::path& dir, const PlannedRun& run) {
    RunDirState st;
    std::error_code ec;
    fs::file_status s = fs::status(dir, ec);
    if (!fs::exists(s)) return st;
    if (!fs::is_directory(s)) {
        st.kind = RunDirState::conflict;
        st.problem = "exists and is not a directory";
        return st;
    }
    if (fs::is_empty(dir, ec)) return st;
    st.kind = RunDirState::rerun;
    if (!fs::exists(dir / "config.yaml", ec)) return st;  // killed before it wrote anything
    Config old_cfg;
    try {
        old_cfg = config_load_file((dir / "config.yaml").string());
    } catch (const UserError& e) {
        st.kind = RunDirState::conflict;
        st.problem = fmt::format("holds a config.yaml that cannot be read ({})",
                                 e.diagnostics().empty() ? e.what() : e.diagnostics()[0].format());
        return st;
    }
    Config a = old_cfg, b = run.config;
    a.threads = b.threads = 0;
    if (!(a == b)) {
        st.kind = RunDirState::conflict;
        std::string diff = config_difference(old_cfg, run.config);
        st.problem =
            "holds a run of a different config" + (diff.empty() ? std::string() : ": " + diff);
        return st;
    }
    if (std::optional<RunSummary> sum = read_run_summary(dir)) {
        if (sum->status == "completed" || sum->status == "diverged") {
            st.kind = RunDirState::finished;
            st.status = sum->status;
            return st;
        }
    }
    if (checkpoint_exists(dir)) {
        try {
            checkpoint_verify(dir, run.config);
            st.kind = RunDirState::resume;
        } catch (const UserError&) {
            // corrupt, foreign or of another config: start again from step 0 (--force)
        }
    }
    return st;
}

std::vector<std::string> run_command(const SweepOptions& opt, const PlannedRun& run, bool force,
                                     bool resume) {
    std::vector<std::string> a = {opt.shown_binary, "run", opt.child_config};
    a.insert(a.end(), run.overrides.begin(), run.overrides.end());
    a.push_back("--out");
    a.push_back((opt.out_dir / run.name).string());
    a.push_back("--quiet");
    if (opt.threads_per_run > 0) {
        a.push_back("--threads");
        a.push_back(std::to_string(opt.threads_per_run));
    }
    if (force)
        a.push_back("--force");
    else if (resume)
        a.push_back("--resume");
    return a;
}

std::string shell_join(const std::vector<std::string>& args) {
    std::string out;
    for (const std::string& s : args) {
        if (!out.empty()) out += ' ';
        bool plain = !s.empty();
        for (char c : s) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      std::string_view("_-./=,:+@%").find(c) != std::string_view::npos;
            if (!ok) plain = false;
        }
        if (plain) {
            out += s;
            continue;
        }
        out += '\'';
        for (char c : s) {
            if (c == '\'')
                out += "'\\''";
            else
                out += c;
        }
        out += '\'';
    }
    return out;
}

namespace {

struct Child {
    pid_t pid = -1;
    const PlannedRun* run = nullptr;
    fs::path log;
    std::chrono::steady_clock::time_point start;
};

// Starts one run: fork, then in the child (async-signal-safe calls only until exec):
//   * its own process group, so a terminal's Ctrl-C reaches the sweep only, which forwards it
//     once (a run counts a second signal as "exit now");
//   * PR_SET_PDEATHSIG = SIGTERM: when the sweep dies, however it dies (kill -9 included), the
//     kernel sends the run SIGTERM and it stops; if the sweep is already gone by then, the run
//     does not start;
//   * default signal dispositions and mask, stdin from /dev/null, stdout and stderr to its log.
// An exec failure comes back through a close-on-exec pipe as an errno.
pid_t spawn(const SweepOptions& opt, const std::vector<std::string>& args, const fs::path& log) {
    auto fail = [&](const char* what, int err) -> UserError {
        return UserError(
            fmt::format("cannot start '{}': {}: {}", opt.exec_path, what, std::strerror(err)));
    };
    const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) throw fail("/dev/null", errno);
    const int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) {
        const int err = errno;
        ::close(devnull);
        throw UserError(
            fmt::format("cannot create its log file '{}': {}", log.string(), std::strerror(err)));
    }
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0) {
        const int err = errno;
        ::close(devnull);
        ::close(logfd);
        throw fail("pipe", err);
    }
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() != parent) _exit(130);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP}) ::sigaction(sig, &dfl, nullptr);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        if (::dup2(devnull, 0) < 0 || ::dup2(logfd, 1) < 0 || ::dup2(logfd, 2) < 0) {
            const int err = errno;
            [[maybe_unused]] ssize_t w = ::write(report[1], &err, sizeof err);
            _exit(127);
        }
        ::execve(opt.exec_path.c_str(), argv.data(), environ);
        const int err = errno;
        [[maybe_unused]] ssize_t w = ::write(report[1], &err, sizeof err);
        _exit(127);
    }
    const int fork_err = errno;
    ::close(devnull);
    ::close(logfd);
    ::close(report[1]);
    if (pid < 0) {
        ::close(report[0]);
        throw fail("fork", fork_err);
    }
    ::setpgid(pid, pid);  // also here: no window in which a signal to the sweep's group reaches it
    int child_err = 0;
    ssize_t n;
    while ((n = ::read(report[0], &child_err, sizeof child_err)) < 0 && errno == EINTR) {
    }
    ::close(report[0]);
    if (n > 0) {
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        throw fail("exec", child_err);
    }
    return pid;
}

}  // namespace

SweepResult run_sweep(const SweepPlan& plan, const SweepOptions& opt,
                      const std::vector<SweepJob>& jobs, const std::atomic<int>& stop,
                      const SweepCallbacks& cb, size_t total, size_t skipped,
                      size_t skipped_failed) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    SweepResult res;
    std::vector<Child> running;
    std::map<size_t, std::string> failed_no_summary;  // for the summary
    size_t next = 0;
    int forwarded = 0;  // the signal last forwarded
    double run_seconds = 0;
    size_t runs_timed = 0;
    auto last_tick = clock::now();
    const fs::path logs = opt.out_dir / "logs";

    auto progress = [&] {
        if (!cb.progress) return;
        SweepProgress p;
        p.total = total;
        p.skipped = skipped;
        p.done = skipped + res.completed + res.diverged + res.failed + res.interrupted;
        p.failed = skipped_failed + res.diverged + res.failed;
        p.interrupted = res.interrupted;
        p.running = running.size();
        p.elapsed_s = std::chrono::duration<double>(clock::now() - t0).count();
        if (runs_timed > 0) {
            const double mean = run_seconds / double(runs_timed);
            const double left = double(jobs.size() - next) + 0.5 * double(running.size());
            p.eta_s = mean * left / double(std::max(1, opt.jobs));
        }
        cb.progress(p);
    };
    auto rebuild = [&] {
        if (!opt.write_summary) return;
        try {
            write_sweep_summary(plan, opt.out_dir, failed_no_summary);
            res.summary_written = true;
        } catch (const UserError& e) {
            res.summary_written = false;
            if (cb.message) cb.message(fmt::format("cannot write the sweep summary: {}", e.what()));
        }
    };

    bool changed = true;  // something to show
    while (next < jobs.size() || !running.empty()) {
        const int sig = stop.load();
        if (sig != 0 && sig != forwarded) {
            for (const Child& c : running) ::kill(c.pid, sig);
            forwarded = sig;
            res.stopped = true;
        }
        if (sig != 0) next = jobs.size();  // start nothing more
        while (sig == 0 && next < jobs.size() && int(running.size()) < std::max(1, opt.jobs)) {
            const SweepJob& job = jobs[next++];
            std::error_code ec;
            fs::create_directories(logs, ec);
            Child c;
            c.run = job.run;
            c.log = logs / (job.run->name + ".log");
            c.start = clock::now();
            changed = true;
            try {
                c.pid = spawn(opt, run_command(opt, *job.run, job.force, job.resume), c.log);
            } catch (const UserError& e) {  // recorded like any failed run; the others go on
                ++res.failed;
                if (!fs::exists(opt.out_dir / job.run->name / "summary.csv", ec))
                    failed_no_summary[job.run->index] = "failed";
                if (cb.message)
                    cb.message(fmt::format("run '{}' failed: {}", job.run->name, e.what()));
                rebuild();
                continue;
            }
            running.push_back(std::move(c));
        }
        if (changed) progress();
        changed = false;

        bool reaped = false;
        for (size_t i = 0; i < running.size();) {
            int status = 0;
            pid_t r = ::waitpid(running[i].pid, &status, WNOHANG);
            if (r == 0 || (r < 0 && errno == EINTR)) {
                ++i;
                continue;
            }
            Child c = running[i];
            running.erase(running.begin() + ptrdiff_t(i));
            reaped = true;
            const fs::path dir = opt.out_dir / c.run->name;
            std::optional<RunSummary> sum = read_run_summary(dir);
            const std::string sum_status = sum ? sum->status : std::string();
            std::string why;
            enum { ok, div, intr, fail } outcome = fail;
            if (r < 0) {
                why = fmt::format("cannot wait for it: {}", std::strerror(errno));
            } else if (WIFEXITED(status)) {
                const int code = WEXITSTATUS(status);
                if (code == 0 && (sum_status == "completed" || sum_status.empty()))
                    outcome = ok;
                else if (code == 130 || sum_status == "interrupted")
                    outcome = intr;
                else if (sum_status == "diverged")
                    outcome = div;
                else
                    why = fmt::format("exit code {}", code);
            } else if (WIFSIGNALED(status)) {
                const int s = WTERMSIG(status);
                if (s == SIGINT || s == SIGTERM)
                    outcome = intr;
                else
                    why = fmt::format("killed by signal {} ({})", s, strsignal(s));
            }
            const double secs = std::chrono::duration<double>(clock::now() - c.start).count();
            switch (outcome) {
                case ok:
                    ++res.completed;
                    run_seconds += secs, ++runs_timed;
                    break;
                case div:
                    ++res.diverged;
                    run_seconds += secs, ++runs_timed;
                    if (cb.message)
                        cb.message(fmt::format("run '{}' diverged (recorded with status diverged)",
                                               c.run->name));
                    break;
                case intr:
                    ++res.interrupted;
                    if (cb.message && !res.stopped)
                        cb.message(fmt::format("run '{}' was interrupted", c.run->name));
                    break;
                case fail: {
                    ++res.failed;
                    run_seconds += secs, ++runs_timed;
                    if (!sum) failed_no_summary[c.run->index] = "failed";
                    std::string last = last_line(c.log);
                    // Name the log only when it holds something: an empty one is removed below,
                    // and on a full disk it may never have been written.
                    if (cb.message)
                        cb.message(fmt::format(
                            "run '{}' failed ({}){}{}", c.run->name, why,
                            last.empty() ? "" : ": " + last,
                            last.empty() ? "; it left no log" : "; its log: " + c.log.string()));
                    break;
                }
            }
            // An empty log (a quiet run that went well) is not worth keeping.
            std::error_code ec;
            if (fs::exists(c.log, ec) && fs::file_size(c.log, ec) == 0) fs::remove(c.log, ec);
            rebuild();
            changed = true;
        }
        if (!reaped) {
            struct timespec ts {
                0, 50 * 1000 * 1000
            };
            nanosleep(&ts, nullptr);
            if (clock::now() - last_tick > std::chrono::seconds(1)) {
                last_tick = clock::now();
                progress();
            }
        }
    }
    std::error_code ec;
    fs::remove(logs, ec);  // only when empty
    rebuild();             // also when nothing ran (every run finished before)
    if (changed) progress();
    return res;
}

}  // namespace moe
