// kill -9 at several moments of a real run, each time resumed with `run --resume` (or started
// again with --force when the process died before its first checkpoint): the run directory ends
// with the same files as a run that was never killed (timing.csv aside).
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "support/process.h"

using moe::test::read_text;
using moe::test::run_moesim;
using moe::test::run_shell;
using moe::test::scratch_dir;
using moe::test::source_path;

TEST_SUITE("cli") {
    TEST_CASE("run --resume after kill -9 at several moments ends as the run that never stopped") {
        const std::string args =
            "'" + source_path("configs/quickstart.yaml") +
            "' train.steps=300 train.log_every=7 train.eval_every=40 train.checkpoint_every=9 "
            "data.train_size=2048 data.eval_size=256 train.batch_size=128 threads=1 --quiet";
        const auto d = scratch_dir("kill9");
        const auto whole = d / "whole", killed = d / "killed";
        const auto w = run_moesim("run " + args + " --out '" + whole.string() + "'");
        CAPTURE(w.output);
        REQUIRE(w.code == 0);
        // Start (or resume), kill -9 after a delay, repeat; the delays are fixed (the moments vary
        // with the machine's speed, the result must not).
        const std::string bin =
            std::string("'") + MOESIM_BINARY + "' run " + args + " --out '" + killed.string() + "'";
        const std::string script =
            "for delay in 0.05 0.15 0.1 0.25 0.2 0.3 0.12; do "
            "  if [ -f '" +
            (killed / "checkpoint.bin").string() +
            "' ]; then mode=--resume; "
            "  else mode=--force; fi; " +
            bin +
            " $mode & pid=$!; sleep $delay; kill -9 $pid 2>/dev/null; wait $pid; "
            "  [ -f '" +
            (killed / "summary.csv").string() +
            "' ] || echo killed-mid-run; "
            "done; "
            "if [ -f '" +
            (killed / "checkpoint.bin").string() + "' ]; then " + bin + " --resume; else " + bin +
            " --force; fi";
        const auto r = run_shell(script);  // POSIX sh
        CAPTURE(r.output);
        REQUIRE(r.code == 0);
        CHECK(r.output.find("killed-mid-run") != std::string::npos);  // the kills did land mid-run
        for (const char* f : {"metrics.csv", "layers.csv", "experts.csv", "specialization.csv",
                              "events.csv", "summary.csv", "checkpoint.bin"}) {
            CAPTURE(f);
            CHECK(read_text(whole / f) == read_text(killed / f));
        }
    }

}  // TEST_SUITE
