// A short training run of the quick start config with a router's overrides, through the public
// train entry, and its layers.csv / experts.csv rows: the end-to-end tests of the routers.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/config_load.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "train/trainer.h"

namespace moe::test {

struct RouterRun {
    Config cfg;
    std::vector<Row> layers, experts;
};

// 40 steps of 128 examples, rows every 10 steps, evaluations at 20 and 40, one thread.
inline RouterRun router_run(const std::string& name, const std::vector<std::string>& overrides) {
    std::vector<std::string> o = {"train.steps=40",
                                  "train.log_every=10",
                                  "train.eval_every=20",
                                  "data.train_size=2048",
                                  "data.eval_size=512",
                                  "train.batch_size=128",
                                  "threads=1"};
    o.insert(o.end(), overrides.begin(), overrides.end());
    RouterRun out;
    out.cfg = config_load_file(source_path("configs/quickstart.yaml"), o);
    const auto dir = scratch_dir(name);
    RunOptions opts;
    opts.out_dir = dir;
    const RunResult res = train_run(out.cfg, opts);
    REQUIRE(res.status == RunStatus::completed);
    out.layers = read_csv(dir / "layers.csv");
    out.experts = read_csv(dir / "experts.csv");
    return out;
}

inline double cell(const Row& r, const std::string& k) {
    return std::stod(r.at(k));
}

}  // namespace moe::test
