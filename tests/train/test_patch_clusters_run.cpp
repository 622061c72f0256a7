// A short run of the default model on the patch_clusters task (Chen et al. 2022): the CSVs are
// written, learning happens, and dispatch_entropy sits in [0, ln K] next to spec_nmi.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "config/config_load.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "train/trainer.h"

using namespace moe;

TEST_SUITE("train") {
    TEST_CASE("a short patch_clusters run writes sane CSVs") {
        const Config cfg = config_load_string(
            "data:\n  task: patch_clusters\n  train_size: 1600\n  eval_size: 800\n"
            "train:\n  steps: 40\n  log_every: 10\n  eval_every: 20\nthreads: 1\n",
            "t.yaml", {});
        const auto dir = moe::test::scratch_dir("patch_clusters_run");
        RunOptions opts;
        opts.out_dir = dir;
        REQUIRE(train_run(cfg, opts).status == RunStatus::completed);

        const auto metrics = moe::test::read_csv(dir / "metrics.csv");
        REQUIRE(!metrics.empty());
        const auto& last = metrics.back();
        CHECK(last.at("split") == "eval");
        // Two balanced classes: chance is 0.5 and log 2 = 0.69; measured 0.90 after 40 steps.
        CHECK(std::stod(last.at("accuracy")) > 0.7);
        CHECK(std::stod(last.at("task_loss")) < 0.6);

        const double lnK = std::log(4.0);
        int eval_rows = 0;
        for (const auto& r : moe::test::read_csv(dir / "layers.csv")) {
            const double h = std::stod(r.at("dispatch_entropy"));
            CHECK(h >= 0.0);
            CHECK(h <= lnK + 1e-12);
            CHECK(std::isfinite(std::stod(r.at("spec_nmi"))));
            eval_rows += r.at("split") == "eval";
        }
        CHECK(eval_rows == 4);  // 2 evaluations x 2 MoE layers

        const auto summary = moe::test::read_csv(dir / "summary.csv");
        REQUIRE(summary.size() == 1);
        CHECK(summary[0].at("data.task") == "patch_clusters");
        const double h = std::stod(summary[0].at("dispatch_entropy"));
        CHECK(h > 0.0);
        CHECK(h < lnK);
    }
}
