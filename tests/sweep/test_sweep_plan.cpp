// The run list of a sweep: grid expansion, the sweep: section, naming, sharding, bad specs.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "config/config_error.h"
#include "config/config_load.h"
#include "config/sweep_spec.h"
#include "sweep/sweep_plan.h"
#include "sweep/sweep_summary.h"

using namespace moe;

namespace {

const std::string kBase = "name: t\nexperts:\n  count: 8\nrouter:\n  k: 2\n";

// The diagnostics of planning, one formatted line each.
std::vector<std::string> plan_errors(const std::string& text,
                                     const std::vector<std::string>& args) {
    try {
        plan_sweep_text(text, "t.yaml", args);
    } catch (const UserError& e) {
        std::vector<std::string> out;
        for (const Diagnostic& d : e.diagnostics()) out.push_back(d.format());
        return out;
    }
    FAIL("expected a UserError");
    return {};
}

std::vector<std::string> names(const SweepPlan& p) {
    std::vector<std::string> out;
    for (const PlannedRun& r : p.runs) out.push_back(r.name);
    return out;
}

}  // namespace

TEST_SUITE("sweep") {
    TEST_CASE(
        "grid expansion is the cartesian product with the first axis outermost and fixed overrides "
        "for all") {
        SweepPlan p = plan_sweep_text(kBase, "t.yaml",
                                      {"experts.count=4,8,16", "train.steps=400", "router.k=1,2"});
        CHECK(p.fixed == std::vector<std::string>{"train.steps=400"});
        CHECK(p.swept_keys == std::vector<std::string>{"experts.count", "router.k"});
        REQUIRE(p.runs.size() == 6);
        CHECK(names(p) == std::vector<std::string>{
                              "experts.count=4,router.k=1", "experts.count=4,router.k=2",
                              "experts.count=8,router.k=1", "experts.count=8,router.k=2",
                              "experts.count=16,router.k=1", "experts.count=16,router.k=2"});
        for (size_t i = 0; i < p.runs.size(); ++i) CHECK(p.runs[i].index == i);
        const PlannedRun& r = p.runs[3];
        CHECK(r.overrides ==
              std::vector<std::string>{"train.steps=400", "experts.count=8", "router.k=2"});
        CHECK(r.swept_values == std::vector<std::string>{"8", "2"});
        CHECK(r.config.experts.count == 8);
        CHECK(r.config.router.k == 2);
        CHECK(r.config.train.steps == 400);
        CHECK(r.config.name == "t");
        // The resolved config is what `moe-sim run CONFIG OVERRIDES...` would load.
        CHECK(r.config == config_load_string(kBase, "t.yaml", r.overrides));
    }

    TEST_CASE("no axis: one run named 'run'") {
        SweepPlan p = plan_sweep_text(kBase, "t.yaml", {"router.k=1"});
        REQUIRE(p.runs.size() == 1);
        CHECK(p.runs[0].name == "run");
        CHECK(p.swept_keys.empty());
        CHECK(p.runs[0].config.router.k == 1);
    }

    TEST_CASE(
        "the sweep: section expands as grid x command line x variants x seeds in that order") {
        const std::string text =
            "name: t\n"
            "sweep:\n"
            "  grid:\n"
            "    experts.count: [4, 8]\n"
            "  variants:\n"
            "    - {balance.alpha: 0.01, balance.bias_rate: 0}\n"
            "    - balance: {alpha: 0, bias_rate: 1e-3}\n"
            "  seeds: [1, 2]\n"
            "train:\n"
            "  steps: 300\n";
        SweepPlan p = plan_sweep_text(text, "t.yaml", {"router.k=1,2"});
        CHECK(p.has_sweep_section);
        CHECK(p.swept_keys == std::vector<std::string>{"experts.count", "router.k", "balance.alpha",
                                                       "balance.bias_rate", "seed"});
        REQUIRE(p.runs.size() == 2 * 2 * 2 * 2);
        CHECK(p.runs[0].name ==
              "experts.count=4,router.k=1,balance.alpha=0.01,balance.bias_rate=0.0,seed=1");
        CHECK(p.runs[1].name ==
              "experts.count=4,router.k=1,balance.alpha=0.01,balance.bias_rate=0.0,seed=2");
        CHECK(p.runs[2].name ==
              "experts.count=4,router.k=1,balance.alpha=0.0,balance.bias_rate=0.001,seed=1");
        CHECK(p.runs[15].name ==
              "experts.count=8,router.k=2,balance.alpha=0.0,balance.bias_rate=0.001,seed=2");
        CHECK(p.runs[2].config.balance.bias_rate == doctest::Approx(1e-3));
        CHECK(p.runs[2].config.train.steps == 300);
        // Names are unique.
        std::vector<std::string> n = names(p);
        CHECK(std::set<std::string>(n.begin(), n.end()).size() == n.size());
    }

    TEST_CASE(
        "the sweep: section is cut from the base config keeping every other line where it was") {
        const std::string text =
            "name: t\nsweep:\n  seeds: [1, 2]\n  # note\n  grid: {router.k: [1, 2]}\ntrain:\n  lr: "
            "fast\n";
        SweepConfigFile f = sweep_config_parse(text, "t.yaml");
        CHECK(f.sweep.present);
        CHECK(f.base_text == "name: t\n\n\n\n\ntrain:\n  lr: fast\n");
        // So a problem elsewhere in the file is reported at its own line.
        std::vector<std::string> e = plan_errors(text, {});
        REQUIRE(e.size() == 1);
        CHECK(e[0].rfind("t.yaml:7:7: train.lr: ", 0) == 0);
        // A flow-style document is handled too.
        SweepConfigFile g =
            sweep_config_parse("{name: t, sweep: {seeds: [1, 2]}, seed: 4}", "t.yaml");
        CHECK(g.sweep.present);
        CHECK(g.sweep.seeds.values.size() == 2);
        CHECK(config_load_string(g.base_text, "t.yaml").seed == 4);
    }

    TEST_CASE("run names use resolved values and are filesystem-safe and unique") {
        CHECK(safe_run_name("a/b c=1,d=x:y") == "a_b_c=1,d=x_y");
        CHECK(safe_run_name("") == "run");
        CHECK(safe_run_name("..") == "_..");
        const std::string long_name(300, 'x');
        const std::string s = safe_run_name(long_name);
        CHECK(s.size() == 200);
        CHECK(s == safe_run_name(long_name));
        CHECK(s != safe_run_name(long_name + "y"));
        // Values are named as `moe-sim validate` prints them, so 1e-2 and 0.01 are the same run.
        SweepPlan p = plan_sweep_text(kBase, "t.yaml", {"balance.alpha=1e-2,1e-3"});
        CHECK(names(p) == std::vector<std::string>{"balance.alpha=0.01", "balance.alpha=0.001"});
        std::vector<std::string> e = plan_errors(kBase, {"balance.alpha=1e-2,0.01"});
        REQUIRE(e.size() == 1);
        CHECK(e[0].find("are the same run (balance.alpha=0.01)") != std::string::npos);
        // A whole section as an axis value is named by its text, made safe.
        SweepPlan q = plan_sweep_text(kBase, "t.yaml", {"router={k: 1, score: sigmoid},{k: 2}"});
        REQUIRE(q.runs.size() == 2);
        CHECK(q.runs[0].name == "router=_k__1,_score__sigmoid_");
        CHECK(q.runs[0].config.router.score == ScoreFn::sigmoid);
        CHECK(q.runs[1].config.router.k == 2);
    }

    TEST_CASE("axis values split at top-level commas only") {
        CHECK(split_axis_values("1,2, 3") == std::vector<std::string>{"1", "2", "3"});
        CHECK(split_axis_values("{k: 1, score: softmax},{k: 2}") ==
              std::vector<std::string>{"{k: 1, score: softmax}", "{k: 2}"});
        CHECK(split_axis_values("'a,b',c") == std::vector<std::string>{"'a,b'", "c"});
        CHECK(split_axis_values("x") == std::vector<std::string>{"x"});
    }

    TEST_CASE("sharding: disjoint and complete for N = 1..5") {
        SweepPlan p =
            plan_sweep_text(kBase, "t.yaml", {"experts.count=4,8,16", "balance.alpha=0,0.01,0.1"});
        REQUIRE(p.runs.size() == 9);
        for (size_t n = 1; n <= 5; ++n) {
            std::vector<int> owners(p.runs.size(), 0);
            for (size_t i = 0; i < n; ++i) {
                Shard sh = parse_shard(std::to_string(i) + "/" + std::to_string(n));
                for (const PlannedRun& r : p.runs)
                    if (sh.contains(r.index)) ++owners[r.index];
            }
            for (int o : owners) CHECK(o == 1);  // every run in exactly one shard
        }
        Shard s = parse_shard("1/3");
        CHECK(s.index == 1);
        CHECK(s.count == 3);
        CHECK(s.contains(4));
        CHECK_FALSE(s.contains(5));
        for (const char* bad : {"3/3", "-1/2", "a/b", "1/0", "2", "/2", "1/", "1/2/3", ""})
            CHECK_THROWS_AS(parse_shard(bad), UserError);
    }

    TEST_CASE("bad specs give one line each and all at once") {
        // Unknown key, with the nearest valid one.
        std::vector<std::string> e = plan_errors(kBase, {"experts.cont=4,8"});
        REQUIRE(e.size() == 1);
        CHECK(e[0] ==
              "override 'experts.cont=4,8': experts.cont: unknown key (did you mean "
              "'experts.count'?)");
        // Empty values and lists.
        e = plan_errors(kBase, {"router.k=", "balance.alpha=1,,2", "seed=1,2"});
        REQUIRE(e.size() == 2);
        CHECK(e[0].find("router.k: empty value") != std::string::npos);
        CHECK(e[1].find("balance.alpha: an empty value in the list") != std::string::npos);
        // A key given twice, on the command line or in the file, or a section and a key inside it.
        e = plan_errors(kBase, {"router.k=1,2", "router.k=1"});
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "override 'router.k=1': router.k: given twice on the command line");
        e = plan_errors("sweep:\n  grid:\n    router.k: [1, 2]\n", {"router.k=1"});
        REQUIRE(e.size() == 1);
        CHECK(e[0] ==
              "override 'router.k=1': router.k: given twice: in sweep.grid (t.yaml:3) and on the "
              "command line");
        e = plan_errors(kBase, {"router={k: 1}", "router.k=1,2"});
        REQUIRE(e.size() == 1);
        CHECK(e[0].find(
                  "given twice: 'router' on the command line and 'router.k' on the command line") !=
              std::string::npos);
        e = plan_errors("sweep:\n  seeds: [1, 2]\n  variants:\n    - {seed: 3}\n", {});
        REQUIRE(e.size() == 1);
        CHECK(e[0].find("seed: given twice") != std::string::npos);
        // The same value twice on one axis.
        e = plan_errors(kBase, {"router.k=1,2,1"});
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "router.k: the value 1 is given twice on the command line");
        // A value its key refuses, and something that is not KEY=VALUE.
        e = plan_errors(kBase, {"router.k=1,two", "nonsense"});
        REQUIRE(e.size() == 2);
        CHECK(e[0].rfind("override 'router.k=1,two': router.k: expected an integer between 1 and ",
                         0) == 0);
        CHECK(e[0].find("got 'two'") != std::string::npos);
        CHECK(e[1] == "override 'nonsense': expected KEY=VALUE or KEY=V1,V2,...");
    }

    TEST_CASE("bad sweep: sections are located in the file") {
        const std::string text =
            "sweep:\n"                    // 1
            "  grid:\n"                   // 2
            "    experts.cont: [4, 8]\n"  // 3
            "    router: {k: []}\n"       // 4
            "    train.lr: 0.1\n"         // 5
            "    balance:\n"              // 6
            "      alpha: [0.1, fast]\n"  // 7
            "  seed: [1]\n"               // 8
            "  variants:\n"               // 9
            "    - 5\n";                  // 10
        std::vector<std::string> e = plan_errors(text, {});
        REQUIRE(e.size() == 6);
        CHECK(e[0] == "t.yaml:3:5: experts.cont: unknown key (did you mean 'experts.count'?)");
        CHECK(e[1] == "t.yaml:4:17: router.k: empty list: give at least one value");
        CHECK(e[2].rfind("t.yaml:5:15: train.lr: expected a list of values", 0) == 0);
        CHECK(e[3].rfind("t.yaml:7:20: balance.alpha: expected a number", 0) == 0);
        CHECK(e[4] == "t.yaml:8:3: sweep.seed: unknown key (did you mean 'sweep.seeds'?)");
        CHECK(e[5].rfind("t.yaml:10:7: sweep.variants: each variant is a non-empty mapping", 0) ==
              0);
        e = plan_errors("sweep:\n  seeds: []\n", {});
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "t.yaml:2:10: sweep.seeds: empty list: give at least one seed");
    }

    TEST_CASE("a combination that breaks a cross-key rule is an error naming the run") {
        std::vector<std::string> e = plan_errors(kBase, {"experts.count=1,4,8", "router.k=2,4"});
        // experts.count=1 with k=2 and k=4 share a message shape but not the text; experts.count=4 with k=4 is fine.
        REQUIRE(!e.empty());
        CHECK(e[0].rfind("run 'experts.count=1,router.k=2': ", 0) == 0);
        CHECK(e[0].find("router.k") != std::string::npos);
        for (const std::string& line : e) CHECK(line.find("experts.count=8") == std::string::npos);
        // A problem every run shares is said once, without a run name.
        e = plan_errors("router:\n  kk: 2\n", {"experts.count=4,8"});
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "t.yaml:2:3: router.kk: unknown key (did you mean 'router.k'?)");
    }

    TEST_CASE("parse_csv: RFC 4180 fields") {
        auto rows = parse_csv("a,\"b,c\",\"d\"\"e\"\n1,,3\n\"x\ny\",2\n");
        REQUIRE(rows.size() == 3);
        CHECK(rows[0] == std::vector<std::string>{"a", "b,c", "d\"e"});
        CHECK(rows[1] == std::vector<std::string>{"1", "", "3"});
        CHECK(rows[2] == std::vector<std::string>{"x\ny", "2"});
        CHECK(parse_csv("a,b\n1,\"unterminated").size() == 1);
    }

}  // TEST_SUITE
