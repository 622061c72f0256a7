// Checkpoint and resume (train/checkpoint.h, train_run with RunOptions::resume): a run stopped
// after step s and resumed ends with every file byte-identical to a run that never stopped
// (timing.csv aside) and the same final training state bit for bit (the final checkpoints are
// equal), for stops right after a log row, right before an evaluation and mid-window, for
// several routing setups and at 1 and 2 threads; a damaged, truncated or foreign checkpoint
// and a changed config are refused without touching the run directory.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config_error.h"
#include "config/config_load.h"
#include "support/process.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace moe;
using moe::test::read_text;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {

namespace fs = std::filesystem;

// 48 steps: log rows every 5, evaluations every 12 (and at 48), checkpoints at evaluations.
const std::vector<std::string> kBase = {
    "train.steps=48",       "train.log_every=5",  "train.eval_every=12",
    "data.train_size=2048", "data.eval_size=256", "train.batch_size=64",
    "experts.count=8",      "experts.d_ff=32",    "model.d_model=32"};

Config config_with(std::vector<std::string> o, int threads) {
    o.insert(o.begin(), kBase.begin(), kBase.end());
    o.push_back("threads=" + std::to_string(threads));
    return config_load_file(source_path("configs/quickstart.yaml"), o);
}

RunResult run(const Config& cfg, const fs::path& dir, bool resume, int64_t stop_after = 0) {
    RunOptions opts;
    opts.out_dir = dir;
    opts.resume = resume;
    opts.stop_after_step = stop_after;
    return train_run(cfg, opts);
}

const char* const kFiles[] = {"metrics.csv", "layers.csv",  "experts.csv",   "specialization.csv",
                              "events.csv",  "summary.csv", "checkpoint.bin"};

void check_same_files(const fs::path& a, const fs::path& b) {
    for (const char* f : kFiles) {
        CAPTURE(f);
        REQUIRE(fs::exists(a / f));
        CHECK(read_text(a / f) == read_text(b / f));
    }
}

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("resume: stopped after step s and resumed equals a run that never stopped") {
        struct Setup {
            const char* name;
            std::vector<std::string> overrides;
        };
        const Setup setups[] = {
            {"quickstart", {}},
            {"bias", {"balance.alpha=0", "balance.bias_rate=0.01", "router.noise=0.3"}},
            {"sigmoid_shared",
             {"router.score=sigmoid", "experts.shared=1", "capacity.drop_policy=score",
              "balance.z_loss=0.001"}},
            // the step-dependent bias schedule, a second loss and the gated shared expert
            {"balance_zoo",
             {"balance.losses.gshard=0.005", "balance.bias_rate=0.01",
              "balance.bias_rule=proportional", "balance.bias_warmup=10",
              "balance.bias_decay=cosine", "experts.shared=1", "experts.shared_gate=sigmoid"}},
            // Chen et al. 2022's pieces: zero router, uniform noise, ngd with an sgd router group
            {"chen",
             {"router.init=zero", "router.k=1", "router.noise=1", "router.noise_kind=uniform",
              "balance.loss=none", "train.optimizer=ngd", "train.router_optimizer=sgd",
              "train.router_lr=0.1"}},
        };
        for (const Setup& su : setups) {
            CAPTURE(su.name);
            const fs::path whole = scratch_dir(std::string("resume_whole_") + su.name);
            REQUIRE(run(config_with(su.overrides, 1), whole, false).status == RunStatus::completed);
            // 5: right after a log row; 11: right before an evaluation; 27: mid-window
            for (int64_t s : {5, 11, 27}) {
                for (int threads : {1, 2}) {
                    CAPTURE(s);
                    CAPTURE(threads);
                    const fs::path d =
                        scratch_dir("resume_" + std::string(su.name) + "_" + std::to_string(s) +
                                    "_" + std::to_string(threads));
                    const RunResult first = run(config_with(su.overrides, 1), d, false, s);
                    REQUIRE(first.status == RunStatus::interrupted);
                    REQUIRE(first.steps_done == s);
                    CHECK(checkpoint_verify(d, config_with(su.overrides, 1)) == s);
                    // resumed at another thread count: the same bits
                    const RunResult rest = run(config_with(su.overrides, threads), d, true);
                    REQUIRE(rest.status == RunStatus::completed);
                    CHECK(rest.steps_done == 48);
                    check_same_files(whole, d);
                }
            }
        }
    }

    TEST_CASE("resume: a run stopped twice and resumed twice still equals the whole run") {
        const fs::path whole = scratch_dir("resume2_whole"), d = scratch_dir("resume2");
        REQUIRE(run(config_with({}, 1), whole, false).status == RunStatus::completed);
        REQUIRE(run(config_with({}, 1), d, false, 8).status == RunStatus::interrupted);
        REQUIRE(run(config_with({}, 2), d, true, 30).status == RunStatus::interrupted);
        REQUIRE(run(config_with({}, 1), d, true).status == RunStatus::completed);
        check_same_files(whole, d);
        // and resuming a completed run does nothing more
        REQUIRE(run(config_with({}, 1), d, true).status == RunStatus::completed);
        check_same_files(whole, d);
    }

    TEST_CASE("resume: the files are cut back to the checkpoint's step") {
        // What a kill -9 after step 26 leaves with checkpoints every 10 steps: the rows of steps
        // 21..26 on disk, a torn last row, and a newest checkpoint of step 20 (no final checkpoint:
        // the process died). Built here by stopping at 20, then at 26, and putting the checkpoint
        // of step 20 back.
        const fs::path whole = scratch_dir("resume_cut_whole"), d = scratch_dir("resume_cut");
        const std::vector<std::string> o = {"train.checkpoint_every=10"};
        REQUIRE(run(config_with(o, 1), whole, false).status == RunStatus::completed);
        REQUIRE(run(config_with(o, 1), d, false, 20).status == RunStatus::interrupted);
        const std::string ckpt20 = read_text(d / "checkpoint.bin");
        REQUIRE(run(config_with(o, 1), d, true, 26).status == RunStatus::interrupted);
        // what a kill -9 after step 26 leaves: rows past the checkpoint, and a torn last row
        {
            std::ofstream ck(d / "checkpoint.bin", std::ios::binary | std::ios::trunc);
            ck << ckpt20;
            std::ofstream m(d / "metrics.csv", std::ios::app);
            m << "27,train,0.5";  // torn: no line end
            // and the temporary file of a checkpoint being written when the process died
            std::ofstream(d / ".checkpoint.bin.tmp-4242-7", std::ios::binary) << "partial";
        }
        CHECK(read_text(d / "metrics.csv").find("\n25,train,") != std::string::npos);
        REQUIRE(run(config_with(o, 1), d, true).status == RunStatus::completed);
        check_same_files(whole, d);
        CHECK_FALSE(fs::exists(d / ".checkpoint.bin.tmp-4242-7"));  // the leftover is removed
    }

    TEST_CASE(
        "resume: no checkpoint, a damaged one or another config is refused, files untouched") {
        const fs::path d = scratch_dir("resume_refuse");
        REQUIRE(run(config_with({}, 1), d, false, 13).status == RunStatus::interrupted);
        const std::string metrics = read_text(d / "metrics.csv");
        const std::string good = read_text(d / "checkpoint.bin");
        auto refused = [&](const Config& cfg, const std::string& needle) {
            try {
                run(cfg, d, true);
                FAIL("resume was not refused");
            } catch (const UserError& e) {
                CAPTURE(e.what());
                CHECK(std::string(e.what()).find(needle) != std::string::npos);
            }
            CHECK(read_text(d / "metrics.csv") == metrics);
        };
        // another config: the keys that differ are named
        refused(config_with({"train.lr=0.01"}, 1), "train.lr (0.003 -> 0.01)");
        auto write = [&](const std::string& bytes) {
            std::ofstream f(d / "checkpoint.bin", std::ios::binary | std::ios::trunc);
            f << bytes;
        };
        write(good.substr(0, good.size() - 100));
        refused(config_with({}, 1), "truncated");
        std::string flipped = good;
        flipped[flipped.size() - 10] ^= 0x20;
        write(flipped);
        refused(config_with({}, 1), "corrupt");
        write("not a checkpoint at all");
        refused(config_with({}, 1), "not a moe-sim checkpoint");
        fs::remove(d / "checkpoint.bin");
        refused(config_with({}, 1), "no checkpoint");
        // with checkpoints off an interrupted run writes none
        const fs::path off = scratch_dir("resume_off");
        REQUIRE(run(config_with({"train.checkpoint_every=0"}, 1), off, false, 13).status ==
                RunStatus::interrupted);
        CHECK_FALSE(checkpoint_exists(off));
    }

}  // TEST_SUITE
