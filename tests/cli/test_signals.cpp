// Signals: SIGINT/SIGTERM during a long data setup stop it within milliseconds (exit 130), and a
// second signal ends the process at once.
#include <doctest/doctest.h>

#include <string>

#include "support/process.h"

using moe::test::read_text;
using moe::test::run_shell;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {

// Starts `moe-sim run ARGS` in the background, waits until `ready` exists (when not empty), sends
// the signals of `kills` ("INT" or "INT;sleep 0.5;INT"...), and prints "rc=N ms=M": the exit
// code and the milliseconds from the last signal to the exit.
moe::test::ProcResult run_and_signal(const std::string& args, const std::string& ready,
                                     const std::string& first_wait, bool second) {
    std::string cmd = "'" + std::string(MOESIM_BINARY) + "' run " + args + " 2>&1 & pid=$!; ";
    if (!ready.empty())
        cmd += "for i in $(seq 600); do [ -e '" + ready + "' ] && break; sleep 0.05; done; ";
    cmd += "sleep " + first_wait + "; kill -INT $pid; ";
    if (second) cmd += "sleep 0.5; kill -INT $pid; ";
    cmd +=
        "t0=$(date +%s%N); wait $pid; rc=$?; t1=$(date +%s%N); "
        "echo \"rc=$rc ms=$(( (t1 - t0) / 1000000 ))\"";
    return run_shell(cmd);
}

int field(const std::string& out, const std::string& key) {
    const size_t at = out.rfind(key + "=");
    REQUIRE(at != std::string::npos);
    return std::stoi(out.substr(at + key.size() + 1));
}

}  // namespace

TEST_SUITE("cli") {
    TEST_CASE("SIGINT during a long data setup exits 130 within a few seconds") {
        const auto d = scratch_dir("sig_setup");
        // 16384 clusters: calibrating their teachers takes minutes on one thread.
        const std::string args = "'" + source_path("configs/quickstart.yaml") + "' --out '" +
                                 (d / "run").string() +
                                 "' data.clusters.num_clusters=16384 --threads 1 --quiet";
        // Signalled once config.yaml exists (the handlers are installed right after it is
        // written), not after a fixed delay: on a loaded machine the process may not have got
        // that far in half a second.
        auto r = run_and_signal(args, (d / "run" / "config.yaml").string(), "0.3", false);
        INFO(r.output);
        CHECK(field(r.output, "rc") == 130);
        CHECK(field(r.output, "ms") < 3000);
        CHECK(r.output.find("interrupted during data setup") != std::string::npos);
        CHECK(std::filesystem::exists(d / "run" / "config.yaml"));
    }

    TEST_CASE("a second SIGINT ends a run at once, in the middle of a long step") {
        const auto d = scratch_dir("sig_second");
        // One step of this model takes seconds on one thread (about 200 GFLOP).
        const std::string args =
            "'" + source_path("configs/quickstart.yaml") + "' --out '" + (d / "run").string() +
            "' model.d_model=1024 experts.d_ff=2048 experts.count=2 router.k=1 model.layers=1 "
            "train.batch_size=8192 data.train_size=8192 data.eval_size=128 train.steps=100 "
            "train.log_every=50 train.eval_every=100 --threads 1 --quiet";
        auto r = run_and_signal(args, (d / "run" / "metrics.csv").string(), "0.2", true);
        INFO(r.output);
        CHECK(field(r.output, "rc") == 130);
        CHECK(field(r.output, "ms") < 2000);
        // Not the orderly stop at the end of the step, which reports the steps done.
        CHECK(r.output.find("interrupted after") == std::string::npos);
        // The files that exist are whole: the CSV files end with a complete line (or are empty).
        const std::string metrics = read_text(d / "run" / "metrics.csv");
        CHECK((metrics.empty() || metrics.back() == '\n'));
        CHECK(std::filesystem::exists(d / "run" / "config.yaml"));
    }

}  // TEST_SUITE
