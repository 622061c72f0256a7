// Real training runs show what the literature says, and the files agree with each other.
// Margins were measured on the quick start config (600 steps, seed 1, Zipf-skewed clusters):
//   alpha=0:              eval max_vio 1.51, effective experts  9.9, 10 experts dead
//   alpha=0.01:           eval max_vio 0.94, effective experts 13.4, none dead
//   alpha=0, bias 0.001:  eval max_vio 0.63, effective experts 15.6, none dead
//   capacity 0.5 vs 1.25: eval drop rate 0.52 vs 0.15
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "config/config_load.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {

using moe::test::read_csv;
using moe::test::Row;

double num(const Row& r, const std::string& k) {
    return std::stod(r.at(k));
}

Row run_summary(const std::string& name, const std::vector<std::string>& overrides) {
    const auto dir = scratch_dir(name);
    std::vector<std::string> o = overrides;
    o.push_back("threads=1");  // ctest runs tests side by side on few cores
    const Config cfg = config_load_file(source_path("configs/quickstart.yaml"), o);
    RunOptions opts;
    opts.out_dir = dir;
    REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
    return read_csv(dir / "summary.csv").at(0);
}

}  // namespace

TEST_SUITE("stats") {
    TEST_CASE("balancing: no balancing is far less balanced than alpha=0.01 or bias balancing") {
        const Row none = run_summary("lit_none", {"balance.alpha=0", "balance.bias_rate=0"});
        const Row aux = run_summary("lit_aux", {"balance.alpha=0.01"});
        const Row bias = run_summary("lit_bias", {"balance.alpha=0", "balance.bias_rate=0.001"});
        CHECK(num(none, "max_vio") > num(aux, "max_vio") + 0.25);
        CHECK(num(none, "max_vio") > num(bias, "max_vio") + 0.25);
        CHECK(num(none, "effective_experts") + 2.0 < num(aux, "effective_experts"));
        CHECK(num(none, "effective_experts") + 2.0 < num(bias, "effective_experts"));
        CHECK(num(none, "dead_final") > num(aux, "dead_final"));
    }

    TEST_CASE("capacity: a smaller capacity factor drops more tokens") {
        const Row small = run_summary("lit_cap05", {"capacity.factor=0.5"});
        const Row large = run_summary("lit_cap125", {"capacity.factor=1.25"});
        CHECK(num(small, "drop_rate") > num(large, "drop_rate") + 0.2);
        CHECK(num(small, "worst_drop_rate") > num(large, "worst_drop_rate"));
    }

    TEST_CASE("layers.csv equals the statistics recomputed from experts.csv") {
        const auto dir = scratch_dir("lit_consistency");
        const Config cfg =
            config_load_file(source_path("configs/quickstart.yaml"),
                             {"train.steps=100", "train.eval_every=50", "capacity.factor=1.0",
                              "balance.alpha=0", "threads=1"});
        RunOptions opts;
        opts.out_dir = dir;
        REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
        const auto layers = read_csv(dir / "layers.csv");
        const auto experts = read_csv(dir / "experts.csv");
        std::map<std::string, std::vector<Row>> by_key;  // step,split,layer -> expert rows
        for (const Row& e : experts)
            by_key[e.at("step") + "," + e.at("split") + "," + e.at("layer")].push_back(e);
        REQUIRE(layers.size() > 10);
        int checked = 0;
        for (const Row& l : layers) {
            const auto& rows = by_key.at(l.at("step") + "," + l.at("split") + "," + l.at("layer"));
            const int N = int(rows.size());
            REQUIRE(N == cfg.experts.count);
            double total = 0, dropped = 0, mx = 0, mn = 1e300;
            int dead = 0;
            std::vector<double> load;
            for (const Row& e : rows) {
                const double a = num(e, "tokens");
                CHECK(num(e, "tokens") == num(e, "processed") + num(e, "dropped"));
                total += a;
                dropped += num(e, "dropped");
                dead += a == 0;
                load.push_back(num(e, "load"));
            }
            for (const Row& e : rows) {
                mx = std::max(mx, num(e, "tokens"));
                mn = std::min(mn, num(e, "tokens"));
            }
            double mean = total / N, var = 0, ent = 0, gini = 0;
            for (double x : load) {
                var += (x - 1.0 / N) * (x - 1.0 / N);
                if (x > 0) ent -= x * std::log(x);
            }
            for (double a : load)
                for (double b : load) gini += std::abs(a - b);
            gini /= 2.0 * N;  // sum of loads is 1
            CHECK(num(l, "max_vio") == doctest::Approx(mx / mean - 1).epsilon(1e-9));
            CHECK(num(l, "load_cv") == doctest::Approx(std::sqrt(var / N) * N).epsilon(1e-6));
            CHECK(num(l, "effective_experts") == doctest::Approx(std::exp(ent)).epsilon(1e-6));
            CHECK(num(l, "load_entropy") == doctest::Approx(ent / std::log(N)).epsilon(1e-6));
            CHECK(num(l, "gini") == doctest::Approx(gini).epsilon(1e-6));
            CHECK(num(l, "min_load") == doctest::Approx(mn / total).epsilon(1e-9));
            CHECK(num(l, "max_load") == doctest::Approx(mx / total).epsilon(1e-9));
            CHECK(int(num(l, "dead_experts")) == dead);
            CHECK(num(l, "drop_rate") == doctest::Approx(dropped / total).epsilon(1e-9));
            ++checked;
        }
        CHECK(checked == int(layers.size()));
    }

}  // TEST_SUITE
