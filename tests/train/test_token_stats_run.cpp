// The token-level routing statistics of a run (token tasks): spec_nmi_token in layers.csv,
// tokens.csv and positions.csv, checked against the eval set the task hands out and against
// each other; clusters runs write none of them.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config/config_load.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "tasks/markov.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::read_csv;
using moe::test::read_text;
using moe::test::Row;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {

Config load(const char* file, std::vector<std::string> overrides) {
    overrides.push_back("threads=1");
    return config_load_file(source_path(file), overrides);
}

std::string first_line(const std::filesystem::path& p) {
    const std::string t = read_text(p);
    return t.substr(0, t.find('\n'));
}

using Key = std::pair<std::string, std::string>;  // (step, layer)

// NMI of a count table, written out here independently of the statistics code:
// 2 I / (H(rows) + H(columns)), natural logs.
double nmi(const std::map<std::pair<int, int>, double>& cells) {
    std::map<int, double> row, col;
    double n = 0;
    for (const auto& [k, c] : cells) {
        row[k.first] += c;
        col[k.second] += c;
        n += c;
    }
    auto h = [n](const std::map<int, double>& m) {
        double s = 0;
        for (const auto& [k, c] : m) s -= c / n * std::log(c / n);
        return s;
    };
    double mi = 0;
    for (const auto& [k, c] : cells) mi += c / n * std::log(n * c / (row[k.first] * col[k.second]));
    return 2 * mi / (h(row) + h(col));
}

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("markov: tokens.csv and positions.csv add up to the eval set") {
        // 512 eval examples: example q is at position 1 + q % 9 (seq_len 10), so positions
        // 1 .. 8 hold 57 examples each and position 9 holds 56 (512 = 56 * 9 + 8).
        const Config cfg =
            load("configs/markov.yaml",
                 {"data.markov.vocab=8", "data.markov.seq_len=10", "data.markov.context=3",
                  "data.eval_size=512", "model.d_model=16", "experts.count=4", "experts.d_ff=16",
                  "capacity.factor=1.0", "train.steps=20", "train.eval_every=10",
                  "train.log_every=5", "train.batch_size=64"});
        const MarkovTask task(cfg);
        const auto dir = scratch_dir("token_stats_markov");
        RunOptions opts;
        opts.out_dir = dir;
        REQUIRE(train_run(cfg, opts).status == RunStatus::completed);

        // layers.csv: spec_nmi_token right after spec_nmi, on eval rows only
        const std::string lh = first_line(dir / "layers.csv");
        CHECK(lh.find(",spec_nmi,spec_nmi_token,dispatch_entropy,") != std::string::npos);
        std::map<Key, Row> eval_layers;
        int train_rows = 0;
        for (const Row& r : read_csv(dir / "layers.csv")) {
            if (r.at("split") == "eval") {
                eval_layers[{r.at("step"), r.at("layer")}] = r;
            } else {
                ++train_rows;
                CHECK(r.at("spec_nmi_token").empty());
            }
        }
        CHECK(train_rows == 8);            // steps 5, 10, 15, 20 x 2 layers
        REQUIRE(eval_layers.size() == 4);  // steps 10, 20 x 2 layers

        // tokens.csv: every cell of a (step, layer) sums to the eval set; each token id's cells
        // sum to its count in the eval set (vocabulary 8 < 256: every id is reported)
        CHECK(first_line(dir / "tokens.csv") == "step,layer,token,expert,tokens");
        std::map<int, int64_t> eval_count;
        for (int v : task.eval_set().token) ++eval_count[v];
        std::map<Key, std::map<std::pair<int, int>, double>> tables;
        std::map<Key, std::map<int, int64_t>> per_token;
        for (const Row& r : read_csv(dir / "tokens.csv")) {
            const Key k{r.at("step"), r.at("layer")};
            const int v = std::stoi(r.at("token")), e = std::stoi(r.at("expert"));
            const int64_t n = std::stoll(r.at("tokens"));
            CHECK(n > 0);  // only non-zero cells are written
            CHECK((e >= 0 && e < 4));
            tables[k][{v, e}] += double(n);
            per_token[k][v] += n;
        }
        REQUIRE(tables.size() == 4);
        for (const auto& [k, pt] : per_token) {
            CAPTURE(k.first);
            CAPTURE(k.second);
            int64_t total = 0;
            for (const auto& [v, n] : pt) total += n;
            CHECK(total == 512);
            CHECK(pt == eval_count);
            // spec_nmi_token is the NMI of exactly this table
            const double reported = std::stod(eval_layers.at(k).at("spec_nmi_token"));
            CHECK(reported >= 0.0);
            CHECK(reported <= 1.0);
            CHECK(reported == doctest::Approx(nmi(tables.at(k))).epsilon(1e-9));
        }

        // position_experts.csv: each position's top-1 experts sum to its examples (57 or 56)
        CHECK(first_line(dir / "position_experts.csv") == "step,layer,position,expert,tokens");
        std::map<Key, std::map<int, int64_t>> per_position;
        for (const Row& r : read_csv(dir / "position_experts.csv")) {
            const int s = std::stoi(r.at("position")), e = std::stoi(r.at("expert"));
            const int64_t n = std::stoll(r.at("tokens"));
            CHECK(n > 0);
            CHECK((e >= 0 && e < 4));
            per_position[{r.at("step"), r.at("layer")}][s] += n;
        }
        REQUIRE(per_position.size() == 4);
        for (const auto& [k, pp] : per_position) {
            REQUIRE(pp.size() == 9);
            for (const auto& [s, n] : pp) CHECK(n == (s == 9 ? 56 : 57));
        }

        // positions.csv: the examples per position, and drop_rate's token-weighted mean is
        // layers.csv's eval drop_rate
        CHECK(first_line(dir / "positions.csv") ==
              "step,layer,position,tokens,processed,dropped_tokens,drop_rate,dropped_token_rate");
        std::map<Key, std::vector<Row>> pos;
        for (const Row& r : read_csv(dir / "positions.csv"))
            pos[{r.at("step"), r.at("layer")}].push_back(r);
        REQUIRE(pos.size() == 4);
        bool any_drop = false;
        for (const auto& [k, rows] : pos) {
            CAPTURE(k.first);
            CAPTURE(k.second);
            REQUIRE(rows.size() == 9);
            double weighted = 0;
            int64_t total = 0;
            for (size_t j = 0; j < rows.size(); ++j) {
                const Row& r = rows[j];
                CHECK(std::stoi(r.at("position")) == int(j) + 1);
                const int64_t n = std::stoll(r.at("tokens"));
                CHECK(n == (j < 8 ? 57 : 56));
                const int64_t processed = std::stoll(r.at("processed"));
                const int64_t dropped_tokens = std::stoll(r.at("dropped_tokens"));
                CHECK(processed <= 2 * n);  // top-2
                CHECK(dropped_tokens <= n);
                const double dr = std::stod(r.at("drop_rate"));
                CHECK(dr == doctest::Approx(1.0 - double(processed) / (2.0 * double(n))));
                CHECK(std::stod(r.at("dropped_token_rate")) ==
                      doctest::Approx(double(dropped_tokens) / double(n)));
                weighted += dr * double(n);
                total += n;
                any_drop = any_drop || processed < 2 * n;
            }
            CHECK(total == 512);
            CHECK(weighted / 512 ==
                  doctest::Approx(std::stod(eval_layers.at(k).at("drop_rate"))).epsilon(1e-9));
        }
        CHECK(any_drop);  // capacity factor 1: some assignment was dropped
    }

    TEST_CASE("modular: one position, the answer's, and the operand b as token") {
        const Config cfg = load("configs/modular.yaml",
                                {"data.modular.p=7", "data.modular.ops=add", "model.d_model=16",
                                 "experts.count=4", "experts.d_ff=16", "train.steps=4",
                                 "train.eval_every=4", "train.log_every=2", "train.batch_size=16"});
        const auto dir = scratch_dir("token_stats_modular");
        RunOptions opts;
        opts.out_dir = dir;
        REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
        // 49 triples, 90% train: round(44.1) = 44, 5 held out = the eval set
        const auto pos = read_csv(dir / "positions.csv");
        REQUIRE(pos.size() == 2);  // 2 MoE layers, one eval
        for (const Row& r : pos) {
            CHECK(r.at("step") == "4");
            CHECK(r.at("position") == "4");
            CHECK(r.at("tokens") == "5");
        }
        int64_t total = 0;
        for (const Row& r : read_csv(dir / "tokens.csv")) {
            const int v = std::stoi(r.at("token"));
            CHECK((v >= 0 && v < 7));
            total += std::stoll(r.at("tokens"));
        }
        CHECK(total == 2 * 5);
    }

    TEST_CASE("modular on the transformer: four positions and every token of a OP b =") {
        const Config cfg =
            load("configs/modular_transformer.yaml",
                 {"data.modular.p=7", "model.d_model=16", "model.heads=2", "experts.count=4",
                  "experts.d_ff=16", "train.steps=4", "train.eval_every=4", "train.log_every=2",
                  "train.batch_size=16", "train.warmup_steps=0"});
        const auto dir = scratch_dir("token_stats_modular_transformer");
        RunOptions opts;
        opts.out_dir = dir;
        REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
        // 49 pairs, 90% train: 5 held out = the eval set, 5 sequences of 4 tokens
        const auto pos = read_csv(dir / "positions.csv");
        REQUIRE(pos.size() == 4);  // 1 MoE layer, positions 1 .. 4
        for (int i = 0; i < 4; ++i) {
            CHECK(pos[size_t(i)].at("position") == std::to_string(i + 1));
            CHECK(pos[size_t(i)].at("tokens") == "5");
        }
        // tokens: the numbers 0 .. 6, "+" (7) and "=" (8), each "+" and "=" once per sequence
        std::map<int, int64_t> per_token;
        for (const Row& r : read_csv(dir / "tokens.csv"))
            per_token[std::stoi(r.at("token"))] += std::stoll(r.at("tokens"));
        int64_t total = 0;
        for (const auto& [v, n] : per_token) {
            CHECK((v >= 0 && v < 9));
            total += n;
        }
        CHECK(total == 20);
        CHECK(per_token[7] == 5);
        CHECK(per_token[8] == 5);
    }

    TEST_CASE("clusters runs write no token statistics") {
        const Config cfg =
            load("configs/quickstart.yaml", {"train.steps=10", "train.eval_every=10",
                                             "data.train_size=1024", "data.eval_size=256"});
        const auto dir = scratch_dir("token_stats_clusters");
        RunOptions opts;
        opts.out_dir = dir;
        REQUIRE(train_run(cfg, opts).status == RunStatus::completed);
        CHECK(first_line(dir / "layers.csv").find("spec_nmi_token") == std::string::npos);
        CHECK_FALSE(std::filesystem::exists(dir / "tokens.csv"));
        CHECK_FALSE(std::filesystem::exists(dir / "positions.csv"));
    }
}
