// The bundled presets (configs/presets, config/presets.h): each is the file in the repository,
// says what its paper says, and trains for real.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "config/config_load.h"
#include "config/presets.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::read_csv;
using moe::test::read_text;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {

// What each preset claims, from its paper (the header comment of each file cites it). A new
// preset needs its row here: the test below fails for a preset without one.
const std::map<std::string, std::map<std::string, std::string>> kPaperFacts = {
    {"switch",
     {{"router.type", "topk"},
      {"router.k", "1"},
      {"capacity.factor", "1.25"},
      {"balance.loss", "switch"},
      {"balance.alpha", "0.01"}}},
    {"mixtral",
     {{"experts.count", "8"},
      {"router.k", "2"},
      {"experts.activation", "swiglu"},
      {"router.normalize", "true"},
      {"capacity.factor", "0.0"}}},
    {"deepseek",
     {{"router.score", "sigmoid"},
      {"router.normalize", "true"},
      {"router.scale", "2.5"},
      {"balance.loss", "none"},
      {"balance.bias_rate", "0.001"},
      {"experts.shared", "1"},
      {"router.topk.groups", "8"},
      {"router.topk.topk_groups", "4"},
      {"capacity.factor", "0.0"}}},
    {"expert_choice",
     {{"router.type", "expert_choice"},
      {"router.k", "1"},
      {"capacity.factor", "2.0"},
      {"balance.loss", "none"}}},
    {"gshard",
     {{"router.k", "2"},
      {"router.topk.second_expert", "random"},
      {"capacity.factor", "1.0"},
      {"balance.loss", "gshard"}}},
    {"shazeer2017",
     {{"router.topk.noise", "learned"},
      {"router.normalize", "true"},
      {"balance.loss", "shazeer"},
      {"balance.alpha", "0.1"},
      {"capacity.factor", "0.0"}}},
    {"jacobs1991", {{"router.type", "soft"}, {"capacity.factor", "0.0"}, {"balance.loss", "none"}}},
    {"hme",
     {{"router.type", "hierarchical"},
      {"router.hierarchical.branches", "4"},
      {"router.hierarchical.k_branches", "2"},
      {"router.k", "2"}}},
    {"hash", {{"router.type", "hash"}, {"router.k", "1"}, {"balance.loss", "none"}}},
    {"base", {{"router.type", "base"}, {"router.k", "1"}, {"balance.loss", "none"}}},
    {"sinkhorn", {{"router.type", "sinkhorn"}, {"router.k", "1"}, {"balance.loss", "none"}}},
    {"st_moe",
     {{"router.k", "2"},
      {"balance.loss", "switch"},
      {"balance.alpha", "0.01"},
      {"balance.z_loss", "0.001"},
      {"capacity.factor", "1.25"},
      {"capacity.eval_factor", "2.0"}}},
};

bool finite_or_empty(const std::string& cell) {
    if (cell.empty()) return true;
    const double v = std::stod(cell);
    return std::isfinite(v);
}

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("the bundled presets are exactly the files of configs/presets") {
        std::set<std::string> on_disk;
        for (const auto& e : std::filesystem::directory_iterator(source_path("configs/presets"))) {
            if (e.path().extension() != ".yaml") continue;
            const std::string name = e.path().stem().string();
            on_disk.insert(name);
            const Preset* p = find_preset(name);
            REQUIRE_MESSAGE(p != nullptr, name, " is in configs/presets but not bundled");
            CHECK_MESSAGE(std::string(p->text) == read_text(e.path()), name,
                          ": the bundled text differs from the file (rebuild)");
        }
        std::set<std::string> bundled;
        for (const Preset& p : bundled_presets()) bundled.insert(std::string(p.name));
        CHECK(bundled == on_disk);
        CHECK(bundled.size() >= 12);
    }

    TEST_CASE("every preset names its paper's settings and has a one-line summary") {
        for (const Preset& p : bundled_presets()) {
            const std::string name(p.name);
            CAPTURE(name);
            REQUIRE_MESSAGE(kPaperFacts.count(name) == 1, "no facts listed for preset ", name);
            CHECK(preset_summary(p).size() > 20);
            const Config cfg = config_load_string(std::string(p.text), "presets/" + name);
            CHECK(cfg.name == name);
            for (const auto& [key, value] : kPaperFacts.at(name)) {
                CAPTURE(key);
                CHECK(config_value_string(cfg, key) == value);
            }
        }
    }

    TEST_CASE("every preset trains for a few dozen steps and writes finite statistics") {
        for (const Preset& p : bundled_presets()) {
            const std::string name(p.name);
            CAPTURE(name);
            const auto dir = scratch_dir("preset_" + name);
            const Config cfg = config_load_file(
                "presets/" + name, {"train.steps=40", "train.log_every=10", "train.eval_every=20",
                                    "data.train_size=2048", "data.eval_size=512",
                                    "train.batch_size=128", "threads=1"});
            RunOptions opts;
            opts.out_dir = dir;
            REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
            const auto metrics = read_csv(dir / "metrics.csv");
            std::vector<double> train_loss;
            for (const auto& r : metrics) {
                CHECK(finite_or_empty(r.at("loss")));
                if (r.at("split") == "train") train_loss.push_back(std::stod(r.at("task_loss")));
            }
            REQUIRE(train_loss.size() == 4);
            CHECK(train_loss.back() < train_loss.front());  // it learns
            const auto layers = read_csv(dir / "layers.csv");
            REQUIRE(layers.size() >= 8);  // 2 layers x (4 train + 2 eval rows)
            for (const auto& r : layers)
                for (const auto& [col, cell] : r) {
                    if (col == "split") continue;
                    CAPTURE(col);
                    CHECK(finite_or_empty(cell));
                }
        }
    }
}

TEST_SUITE("train") {
    TEST_CASE("the sequence-wise balance loss trains on markov and balances better than none") {
        // DeepSeek's sequence-wise loss on the markov task (sequences of 31 positions, batches of
        // 248 = 8 whole sequences): against no balancing, the final training max_vio falls.
        auto run = [](const std::string& loss, const std::string& dir_name) {
            const auto dir = scratch_dir(dir_name);
            const Config cfg = config_load_file(
                source_path("configs/markov.yaml"),
                {"balance.loss=" + loss, "balance.alpha=0.1", "train.steps=200",
                 "train.log_every=50", "train.eval_every=100", "train.batch_size=248",
                 "data.eval_size=1024", "capacity.factor=0", "threads=1"});
            RunOptions opts;
            opts.out_dir = dir;
            REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
            double vio = 0.0;
            int n = 0;
            for (const auto& r : read_csv(dir / "layers.csv"))
                if (r.at("split") == "train" && r.at("step") == "200") {
                    vio += std::stod(r.at("max_vio"));
                    ++n;
                }
            REQUIRE(n > 0);
            return vio / n;
        };
        const double none = run("none", "seq_none"), seq = run("sequence", "seq_loss");
        CAPTURE(none);
        CAPTURE(seq);
        CHECK(seq < none);
    }
}
