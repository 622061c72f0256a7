// Running a sweep on this machine (docs/sweeps.md): every run is a child process executing
//   moe-sim run CONFIG KEY=VALUE... --out SWEEPDIR/RUNNAME --quiet [--threads T] [--force|--resume]
// J at a time; the sweep's summary.csv is rebuilt after each finished run. Each run has its own
// process group (the sweep forwards signals to it) and dies with the sweep: when the sweep ends
// for any reason, kill -9 included, the kernel sends each run SIGTERM (PR_SET_PDEATHSIG), so a
// rerun never starts a run beside a live one.
//
// Resume: a run directory whose config.yaml equals the run's resolved config (the thread count
// aside: it does not change results) and whose summary.csv says completed or diverged is finished
// and skipped; one that holds an interrupted or killed run with a valid checkpoint of the same
// config continues from it (--resume: it ends byte-identical to a run that never stopped); one
// that is missing, empty, or unfinished without a usable checkpoint is run again from step 0
// (--force); one whose config.yaml differs is a conflict: the sweep refuses to start. The
// sweep's --force runs every run again from step 0.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "sweep/sweep_plan.h"

namespace moe {

// What a run directory holds, compared with the run planned for it.
struct RunDirState {
    enum Kind {
        fresh,     // missing or empty: run it
        rerun,     // an unfinished run of the same config (or leftovers): run it with --force
        resume,    // an unfinished run of the same config with a valid checkpoint: --resume
        finished,  // completed or diverged with the same config: skip it
        conflict,  // a different config, or not a directory: refuse
    } kind = fresh;
    std::string status;   // finished: the status in its summary.csv
    std::string problem;  // conflict: why, in one line
};
RunDirState inspect_run_dir(const std::filesystem::path& dir, const PlannedRun& run);

struct SweepOptions {
    std::filesystem::path out_dir;  // the sweep directory
    std::string exec_path;          // the binary to execute (/proc/self/exe)
    std::string shown_binary;       // argv[0] of the children and of --list lines
    std::string child_config;       // the CONFIG argument of the children
    int jobs = 1;
    int threads_per_run = 0;    // 0: no --threads (the threads key is given by the user)
    bool write_summary = true;  // rebuild summary.csv after each finished run
};

// The child's argument vector (argv[0] = shown_binary).
std::vector<std::string> run_command(const SweepOptions& opt, const PlannedRun& run, bool force,
                                     bool resume = false);
// A POSIX shell command line that passes exactly these arguments.
std::string shell_join(const std::vector<std::string>& args);

struct SweepJob {
    const PlannedRun* run = nullptr;
    bool force = false;   // pass --force (the directory holds an unfinished run)
    bool resume = false;  // pass --resume (it holds an unfinished run with a valid checkpoint)
};

struct SweepProgress {
    size_t total = 0;    // runs of this sweep (or shard)
    size_t done = 0;     // finished: skipped + completed + diverged + failed + interrupted
    size_t skipped = 0;  // finished before this invocation
    size_t failed = 0;   // diverged or failed (this invocation or before)
    size_t interrupted = 0;
    size_t running = 0;
    double elapsed_s = 0;
    double eta_s = -1;  // < 0: not known yet
};

struct SweepResult {
    size_t completed = 0;  // this invocation
    size_t diverged = 0;
    size_t failed = 0;
    size_t interrupted = 0;
    bool stopped = false;          // a signal stopped the sweep
    bool summary_written = false;  // the last rebuild of summary.csv succeeded
};

struct SweepCallbacks {
    std::function<void(const SweepProgress&)> progress;  // after each change, and every second
    std::function<void(const std::string&)> message;     // one line about one run
};

// Runs the jobs. `stop` holds the number of a signal to forward to the children (0 = none):
// once it is set no new run starts, the running ones receive it, and run_sweep returns when all
// have exited. `base` says how many runs were finished before (skipped) and of those how many
// diverged, for the progress display.
SweepResult run_sweep(const SweepPlan& plan, const SweepOptions& opt,
                      const std::vector<SweepJob>& jobs, const std::atomic<int>& stop,
                      const SweepCallbacks& cb, size_t total, size_t skipped,
                      size_t skipped_failed);

}  // namespace moe
