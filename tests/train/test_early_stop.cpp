// train.early_stop (EarlyStopState, the trainer's early stop): a run stops at the step that its
// own per-step training losses say, computed here from the same run with the rules off (log and
// eval rows at every step, so metrics.csv holds each step's loss), and its stop step is the
// state the run without the rule had after the step before (the stopping step's update is not
// applied); the floor and after_step rules; off by default; resume keeps the running minimum;
// negative values are refused.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "config/config_error.h"
#include "config/config_load.h"
#include "support/csv_rows.h"
#include "support/process.h"
#include "train/train_state.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::read_csv;
using moe::test::read_text;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {

namespace fs = std::filesystem;

// 40 minibatch steps of 64: the per-step loss goes up and down. Log and eval rows at every step.
const std::vector<std::string> kBase = {"train.steps=40",     "train.log_every=1",
                                        "train.eval_every=1", "data.train_size=2048",
                                        "data.eval_size=256", "train.batch_size=64",
                                        "experts.count=4",    "experts.d_ff=16",
                                        "model.d_model=16",   "threads=1"};

Config config_with(std::vector<std::string> o) {
    o.insert(o.begin(), kBase.begin(), kBase.end());
    return config_load_file(source_path("configs/quickstart.yaml"), o);
}

RunResult run(const Config& cfg, const fs::path& dir, bool resume = false, int64_t stop_after = 0) {
    RunOptions opts;
    opts.out_dir = dir;
    opts.resume = resume;
    opts.stop_after_step = stop_after;
    return train_run(cfg, opts);
}

// The one diagnostic of loading `yaml` (label t.yaml).
std::string load_error(const std::string& yaml) {
    try {
        config_load_string(yaml, "t.yaml", {});
    } catch (const UserError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        return e.diagnostics()[0].format();
    }
    FAIL("expected a UserError");
    return {};
}

std::string num(double v) {
    return fmt::format("{:.17g}", v);
}

// The rows of `split` in metrics.csv, in step order.
std::vector<moe::test::Row> rows_of(const fs::path& dir, const std::string& split) {
    std::vector<moe::test::Row> out;
    for (const auto& r : read_csv(dir / "metrics.csv"))
        if (r.at("split") == split) out.push_back(r);
    return out;
}

// The reference: every step's training loss (index s - 1) of the run with the rules off.
struct Reference {
    fs::path dir;
    std::vector<double> loss;
};

const Reference& reference() {
    static const Reference ref = [] {
        Reference r;
        // one folder per process: ctest runs each test case as its own process, in parallel
        r.dir = scratch_dir("early_stop_reference_" + std::to_string(::getpid()));
        REQUIRE(run(config_with({}), r.dir).status == RunStatus::completed);
        for (const auto& row : rows_of(r.dir, "train")) r.loss.push_back(std::stod(row.at("loss")));
        REQUIRE(r.loss.size() == 40);
        return r;
    }();
    return ref;
}

// The expected stop step of the rules from the reference losses (nullopt: no stop).
std::optional<int> expected_stop(const std::vector<double>& loss, double rise, double floor,
                                 int after) {
    double mn = std::numeric_limits<double>::infinity();
    for (int s = 1; s <= int(loss.size()); ++s) {
        const double l = loss[size_t(s - 1)];
        if (s > after && ((rise > 0 && l > mn + rise) || (floor > 0 && l <= floor))) return s;
        mn = std::min(mn, l);
    }
    return std::nullopt;
}

// Half the largest rise of a step's loss over the minimum of the steps before it: a loss_rise
// that the reference run crosses.
double half_largest_rise(const std::vector<double>& loss) {
    double mn = loss[0], best = 0;
    for (size_t i = 1; i < loss.size(); ++i) {
        best = std::max(best, loss[i] - mn);
        mn = std::min(mn, loss[i]);
    }
    REQUIRE(best > 0);
    return best / 2;
}

// The stopped run's metrics.csv rows equal the reference's before step s; its train row at s is
// the reference's (the same forward pass) but for the gradient norm (no backward: empty); its
// eval row at s is the reference's eval row at s - 1 (the update of step s was not applied).
void check_stopped_at(const fs::path& dir, int s) {
    const Reference& ref = reference();
    const auto summary = read_csv(dir / "summary.csv");
    REQUIRE(summary.size() == 1);
    CHECK(summary[0].at("status") == "completed");
    CHECK(summary[0].at("steps") == std::to_string(s));
    const auto train = rows_of(dir, "train"), eval = rows_of(dir, "eval");
    const auto rtrain = rows_of(ref.dir, "train"), reval = rows_of(ref.dir, "eval");
    REQUIRE(train.size() == size_t(s));
    REQUIRE(eval.size() == size_t(s));
    for (int i = 0; i + 1 < s; ++i) {
        CHECK(train[size_t(i)] == rtrain[size_t(i)]);
        CHECK(eval[size_t(i)] == reval[size_t(i)]);
    }
    auto last = train.back(), rlast = rtrain[size_t(s - 1)];
    CHECK(last.at("grad_norm").empty());
    CHECK_FALSE(rlast.at("grad_norm").empty());
    last.erase("grad_norm");
    rlast.erase("grad_norm");
    CHECK(last == rlast);
    if (s >= 2) {
        auto e = eval.back(), re = reval[size_t(s - 2)];
        CHECK(e.at("step") == std::to_string(s));
        e.erase("step");
        re.erase("step");
        CHECK(e == re);
    }
}

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("early stop: the rules on a hand-made loss sequence") {
        EarlyStopConfig c;
        c.loss_rise = 0.02;
        EarlyStopState st;
        CHECK(st.observe(c, 1, 1.0) == EarlyStopReason::none);
        CHECK(st.observe(c, 2, 0.8) == EarlyStopReason::none);
        CHECK(st.observe(c, 3, 0.81) == EarlyStopReason::none);       // 0.01 above the minimum 0.8
        CHECK(st.observe(c, 4, 0.83) == EarlyStopReason::loss_rise);  // 0.03 above it
        CHECK(st.min_loss == 0.8);
        CHECK(st.reason == EarlyStopReason::loss_rise);

        c.after_step = 4;  // the same losses: step 4 is not checked, 5 is
        EarlyStopState a;
        for (int s = 1; s <= 4; ++s)
            CHECK(a.observe(c, s, std::vector<double>{1.0, 0.8, 0.81, 0.83}[size_t(s - 1)]) ==
                  EarlyStopReason::none);
        CHECK(a.observe(c, 5, 0.821) == EarlyStopReason::loss_rise);

        EarlyStopConfig f;
        f.loss_floor = 0.5;
        EarlyStopState b;
        CHECK(b.observe(f, 1, 0.7) == EarlyStopReason::none);
        CHECK(b.observe(f, 2, 0.5) == EarlyStopReason::loss_floor);  // at the floor

        EarlyStopState off;  // no rule on: nothing, not even the minimum
        CHECK(off.observe(EarlyStopConfig{}, 1, 1.0) == EarlyStopReason::none);
        CHECK(std::isinf(off.min_loss));
    }

    TEST_CASE("early stop: loss_rise stops where the run's own losses cross it") {
        const Reference& ref = reference();
        const double rise = half_largest_rise(ref.loss);
        const auto want = expected_stop(ref.loss, rise, 0, 0);
        REQUIRE(want);
        REQUIRE(*want < 40);
        const fs::path dir = scratch_dir("early_stop_rise");
        const RunResult r = run(config_with({"train.early_stop.loss_rise=" + num(rise)}), dir);
        CHECK(r.status == RunStatus::completed);
        CHECK(r.steps_done == *want);
        CHECK(r.stop_reason == "loss_rise");
        check_stopped_at(dir, *want);
        CHECK(read_csv(dir / "summary.csv")[0].at("stop_reason") == "loss_rise");
    }

    TEST_CASE("early stop: loss_floor stops at the first loss at or below it") {
        const Reference& ref = reference();
        const double floor = ref.loss[19];  // step 20's loss: reached at step 20 or before
        const auto want = expected_stop(ref.loss, 0, floor, 0);
        REQUIRE(want);
        CHECK(*want <= 20);
        const fs::path dir = scratch_dir("early_stop_floor");
        const RunResult r = run(config_with({"train.early_stop.loss_floor=" + num(floor)}), dir);
        CHECK(r.steps_done == *want);
        CHECK(r.stop_reason == "loss_floor");
        check_stopped_at(dir, *want);
    }

    TEST_CASE("early stop: after_step delays the checks, not the minimum") {
        const Reference& ref = reference();
        const double rise = half_largest_rise(ref.loss);
        const int first = *expected_stop(ref.loss, rise, 0, 0);
        const auto want = expected_stop(ref.loss, rise, 0, first);  // checks from first + 1 on
        const fs::path dir = scratch_dir("early_stop_after");
        const RunResult r =
            run(config_with({"train.early_stop.loss_rise=" + num(rise),
                             "train.early_stop.after_step=" + std::to_string(first)}),
                dir);
        CHECK(r.status == RunStatus::completed);
        if (want) {
            CHECK(r.steps_done == *want);
            CHECK(r.stop_reason == "loss_rise");
            check_stopped_at(dir, *want);
        } else {
            CHECK(r.steps_done == 40);
            CHECK(r.stop_reason.empty());
            CHECK(read_csv(dir / "summary.csv")[0].at("stop_reason").empty());
        }
    }

    TEST_CASE("early stop: off by default and at 0, and no summary column then") {
        const Reference& ref = reference();
        const fs::path dir = scratch_dir("early_stop_zero");
        REQUIRE(run(config_with({"train.early_stop.loss_rise=0", "train.early_stop.loss_floor=0",
                                 "train.early_stop.after_step=3"}),
                    dir)
                    .steps_done == 40);
        for (const char* f : {"metrics.csv", "layers.csv", "experts.csv", "summary.csv"}) {
            CAPTURE(f);
            CHECK(read_text(dir / f) == read_text(ref.dir / f));
        }
        CHECK(read_text(ref.dir / "summary.csv").find("stop_reason") == std::string::npos);
        const Config d = config_load_string("", "t.yaml", {});
        CHECK_FALSE(d.train.early_stop.on());
    }

    TEST_CASE("early stop: a resumed run keeps the running minimum and stops at the same step") {
        const Reference& ref = reference();
        const double rise = half_largest_rise(ref.loss);
        const int want = *expected_stop(ref.loss, rise, 0, 0);
        // interrupted at the step of the smallest loss before the stop: a resumed run that lost
        // its minimum would measure the rise from a later, larger loss
        int argmin = 1;
        for (int s = 1; s < want; ++s)
            if (ref.loss[size_t(s - 1)] < ref.loss[size_t(argmin - 1)]) argmin = s;
        const Config cfg = config_with({"train.early_stop.loss_rise=" + num(rise)});
        const fs::path whole = scratch_dir("early_stop_whole"),
                       parts = scratch_dir("early_stop_parts");
        REQUIRE(run(cfg, whole).steps_done == want);
        REQUIRE(run(cfg, parts, false, argmin).status == RunStatus::interrupted);
        const RunResult r = run(cfg, parts, true);
        CHECK(r.steps_done == want);
        CHECK(r.stop_reason == "loss_rise");
        for (const char* f :
             {"metrics.csv", "layers.csv", "experts.csv", "summary.csv", "checkpoint.bin"}) {
            CAPTURE(f);
            CHECK(read_text(parts / f) == read_text(whole / f));
        }
        // resuming a run that the rule ended trains no further
        const RunResult again = run(cfg, parts, true);
        CHECK(again.steps_done == want);
        CHECK(again.stop_reason == "loss_rise");
        CHECK(read_text(parts / "metrics.csv") == read_text(whole / "metrics.csv"));
        CHECK(read_text(parts / "summary.csv") == read_text(whole / "summary.csv"));
    }

    TEST_CASE("early stop: negative values are refused with the key and its place") {
        for (const char* key : {"loss_rise", "loss_floor", "after_step"}) {
            CAPTURE(key);
            const std::string e =
                load_error(std::string("train:\n  early_stop:\n    ") + key + ": -1\n");
            CHECK(e.find(std::string("train.early_stop.") + key) != std::string::npos);
            CHECK(e.find("t.yaml:3") != std::string::npos);
            CHECK(e.find(">= 0") != std::string::npos);
        }
        const auto res =
            moe::test::run_moesim("validate '" + source_path("configs/quickstart.yaml") +
                                  "' train.early_stop.loss_rise=-0.5");
        CHECK(res.code == 2);
        CHECK(res.output.find("train.early_stop.loss_rise") != std::string::npos);
    }
}
