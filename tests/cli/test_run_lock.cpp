// Two processes never write one run directory: a second `run` (even with --force) on a directory
// that a live run holds is refused with one line naming the holder's pid, exit code 2.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "support/process.h"

using moe::test::run_shell;
using moe::test::scratch_dir;
using moe::test::source_path;

TEST_SUITE("cli") {
    TEST_CASE("a second run on a run directory in use is refused with exit 2, naming the holder") {
        const auto d = scratch_dir("run_lock");
        const std::string bin = "'" + std::string(MOESIM_BINARY) + "'";
        const std::string run = bin + " run '" + source_path("configs/quickstart.yaml") +
                                "' --out '" + (d / "run").string() + "' --quiet --threads 1 ";
        const std::string metrics = (d / "run" / "metrics.csv").string();
        // The first run trains for a long time; the second starts once the first is writing.
        auto r =
            run_shell(run +
                      "train.steps=1000000 train.eval_every=1000000 >/dev/null 2>&1 & pid=$!; "
                      "for i in $(seq 600); do [ -e '" +
                      metrics + "' ] && break; sleep 0.05; done; " + run +
                      "train.steps=20 train.log_every=5 train.eval_every=10 --force 2>&1; rc=$?; "
                      "echo \"holder=$pid\"; kill -TERM $pid; wait $pid; echo \"rc=$rc first=$?\"");
        INFO(r.output);
        const std::string holder = r.output.substr(r.output.find("holder=") + 7);
        const std::string pid = holder.substr(0, holder.find('\n'));
        CHECK(r.output.find("rc=2 first=130") != std::string::npos);
        CHECK(r.output.rfind("moe-sim: error: run directory '", 0) == 0);
        CHECK(r.output.find("is in use by another moe-sim run (pid " + pid + ")") !=
              std::string::npos);
        // The first run's files are its own: one header line in metrics.csv.
        const std::string m = moe::test::read_text(d / "run" / "metrics.csv");
        CHECK(m.rfind("step,", 0) == 0);
        CHECK(m.find("step,", 1) == std::string::npos);
    }

}  // TEST_SUITE

TEST_SUITE("cli") {
    TEST_CASE("run --resume of no run says so, exit 2") {
        const auto d = scratch_dir("resume");
        auto r = moe::test::run_moesim("run '" + source_path("configs/quickstart.yaml") +
                                       "' --out '" + (d / "run").string() + "' --resume");
        CHECK(r.code == 2);
        CHECK(r.output.rfind("moe-sim: error: run --resume: run directory '", 0) == 0);
        CHECK(r.output.find("does not exist; there is nothing to resume") != std::string::npos);
        CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
        CHECK_FALSE(std::filesystem::exists(d / "run" / "config.yaml"));
    }

}  // TEST_SUITE
