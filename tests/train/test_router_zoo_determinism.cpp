// The routers of the routing zoo (hash, random, sinkhorn, base, hierarchical) give byte-identical
// CSV at 1 and 2 threads: batches large enough that their parallel loops run in parallel
// (T * N above the routers' 16384 threshold), except base, whose assignment is sequential.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/config_load.h"
#include "support/process.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::read_text;
using moe::test::scratch_dir;
using moe::test::source_path;

TEST_SUITE("train") {
    TEST_CASE(
        "zoo routers: the same config and seed give byte-identical CSV with 1 and 2 threads") {
        struct Case {
            const char* name;
            std::vector<std::string> overrides;
        };
        const std::vector<Case> cases = {
            {"hash", {"router.type=hash", "train.batch_size=1100"}},
            {"random", {"router.type=random", "train.batch_size=1100"}},
            {"sinkhorn", {"router.type=sinkhorn", "train.batch_size=1100"}},
            {"base", {"router.type=base", "router.k=1", "train.batch_size=128"}},
            {"hierarchical",
             {"router.type=hierarchical", "router.hierarchical.branches=4",
              "router.hierarchical.k_branches=2", "router.k=1", "train.batch_size=1100"}},
        };
        for (const Case& c : cases) {
            CAPTURE(c.name);
            std::string csv[2];
            for (int threads : {1, 2}) {
                std::vector<std::string> o = {"train.steps=4", "train.log_every=2",
                                              "train.eval_every=4", "data.train_size=4096",
                                              "data.eval_size=256"};
                o.insert(o.end(), c.overrides.begin(), c.overrides.end());
                o.push_back("threads=" + std::to_string(threads));
                const auto dir =
                    scratch_dir(std::string("zoo_det_") + c.name + std::to_string(threads));
                RunOptions opts;
                opts.out_dir = dir;
                REQUIRE(train_run(config_load_file(source_path("configs/quickstart.yaml"), o), opts)
                            .status == RunStatus::completed);
                csv[threads - 1] = read_text(dir / "layers.csv") + read_text(dir / "experts.csv") +
                                   read_text(dir / "metrics.csv");
            }
            CHECK(csv[0] == csv[1]);
        }
    }

}  // TEST_SUITE
