// run --out: an empty path (an unset shell variable, `--out=`) is refused, never the default.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "support/process.h"

using moe::test::run_shell;
using moe::test::scratch_dir;
using moe::test::source_path;

TEST_SUITE("cli") {
    TEST_CASE("run --out with an empty path exits 2 with one line and writes nothing") {
        const std::filesystem::path dir = scratch_dir("out_option");
        const std::string run =
            "cd '" + dir.string() + "' && '" + MOESIM_BINARY + "' run '" +
            source_path("configs/quickstart.yaml") +
            "' train.steps=1 train.log_every=1 train.eval_every=1 "
            "data.train_size=64 data.eval_size=16 train.batch_size=8 --threads 1";
        for (const std::string out :
             {"--out ''", "--out=''", "--out '' --quiet", "--out= --quiet"}) {
            CAPTURE(out);
            auto r = run_shell(run + " " + out);
            CHECK(r.code == 2);
            CHECK(r.output.rfind("moe-sim: error: --out: ", 0) == 0);
            CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
            CHECK(
                std::filesystem::is_empty(dir));  // neither runs/quickstart nor a "--quiet" folder
        }
        auto r = run_shell(run + " --out ''");
        CHECK(r.output.find("an empty path") != std::string::npos);
        // A directory that starts with '-' is still reachable, written as a path.
        r = run_shell(run + " --quiet --out ./-x");
        CHECK(r.code == 0);
        CHECK(std::filesystem::exists(dir / "-x" / "config.yaml"));
    }

}  // TEST_SUITE
