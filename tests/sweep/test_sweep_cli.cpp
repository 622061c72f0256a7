// moe-sim sweep end to end: --list, a real sweep with --jobs 2, --collect, resume after SIGTERM,
// refusing a changed config, failing runs, shards, and the sweep: section of a config file.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sweep/sweep_summary.h"
#include "sweep_test_util.h"

using namespace moe::sweep_test;
using moe::parse_csv;

namespace {

// The sweep's summary.csv as rows; column `col` of each row.
std::vector<std::string> column(const fs::path& sweep_dir, const std::string& col) {
    auto rows = parse_csv(slurp(sweep_dir / "summary.csv"));
    std::vector<std::string> out;
    if (rows.empty()) return out;
    size_t c = std::find(rows[0].begin(), rows[0].end(), col) - rows[0].begin();
    REQUIRE(c < rows[0].size());
    for (size_t i = 1; i < rows.size(); ++i) out.push_back(rows[i][c]);
    return out;
}

fs::file_time_type mtime(const fs::path& p) {
    return fs::last_write_time(p);
}

}  // namespace

TEST_SUITE("sweep") {
    TEST_CASE("--list prints the exact `moe-sim run` command of every run and runs nothing") {
        const fs::path d = scratch("list");
        const fs::path out = d / "s";
        const auto args = concat(
            {"sweep", quickstart(), "experts.count=4,8", "router.k=1,2"},
            concat(tiny(), {"--out", out.string(), "--jobs", "2", "--threads", "2", "--list"}));
        Result r = run(args, d);
        CHECK(r.code == 0);
        std::vector<std::string> l = lines(r.out);
        REQUIRE(l.size() == 4);
        const std::string first =
            std::string(MOESIM_BINARY) + " run " + quickstart() +
            " train.steps=20 train.log_every=5 train.eval_every=10 data.train_size=1024 "
            "data.eval_size=128 train.batch_size=64 experts.count=4 router.k=1 --out " +
            (out / "experts.count=4,router.k=1").string() + " --quiet --threads 1";
        CHECK(l[0] == first);
        CHECK(l[3].find("experts.count=8 router.k=2 --out") != std::string::npos);
        CHECK_FALSE(fs::exists(out));
        // A listed line is a working command (what `| parallel` or a shell loop runs) ...
        REQUIRE(std::system(l[0].c_str()) == 0);
        CHECK(slurp(out / "experts.count=4,router.k=1" / "summary.csv").find("completed") !=
              std::string::npos);
        // ... and the sweep takes the run it made as finished: it lists the other three only.
        Result again = run(args, d);
        CHECK(again.code == 0);
        CHECK(lines(again.out).size() == 3);
        CHECK(again.err.find("1 of 4 runs already finished") != std::string::npos);
        // Shards list their part only.
        auto sharded = args;
        sharded.push_back("--shard");
        sharded.push_back("1/2");
        Result s = run(sharded, d);
        CHECK(s.code == 0);
        CHECK(lines(s.out).size() == 2);  // runs 1 and 3 (run 0 is finished anyway)
    }

    TEST_CASE(
        "a tiny sweep with --jobs 2 completes every run with one summary row each and --collect "
        "rebuilds it") {
        const fs::path d = scratch("jobs2");
        const fs::path out = d / "s";
        const auto args =
            concat({"sweep", quickstart(), "experts.count=4,8", "router.k=1,2"},
                   concat(tiny(), {"--out", out.string(), "--jobs", "2", "--threads", "2"}));
        Result r = run(args, d);
        CHECK_MESSAGE(r.code == 0, r.err);
        CHECK(r.out.empty());
        CHECK(r.err.find("4 runs: 4 completed") != std::string::npos);
        auto rows = parse_csv(slurp(out / "summary.csv"));
        REQUIRE(rows.size() == 5);
        CHECK(rows[0][0] == "run");
        CHECK(rows[0][1] == "experts.count");
        CHECK(rows[0][2] == "router.k");
        CHECK(std::count(rows[0].begin(), rows[0].end(), "experts.count") == 1);  // not repeated
        CHECK(rows[1][0] == "experts.count=4,router.k=1");
        CHECK(rows[4][0] == "experts.count=8,router.k=2");
        CHECK(rows[4][1] == "8");
        CHECK(rows[4][2] == "2");
        for (const std::string& s : column(out, "status")) CHECK(s == "completed");
        // Threads divided: 2 for the sweep, 2 jobs -> 1 per run.
        CHECK(slurp(out / "experts.count=8,router.k=1" / "config.yaml").find("\nthreads: 1 ") !=
              std::string::npos);
        CHECK_FALSE(fs::exists(out / "logs"));  // quiet runs that went well leave no log

        // --collect rebuilds the table from whatever run directories exist.
        fs::remove(out / "summary.csv");
        fs::remove_all(out / "experts.count=4,router.k=2");
        auto collect = args;
        collect.push_back("--collect");
        Result c = run(collect, d);
        CHECK(c.code == 1);  // not every run has completed
        CHECK(c.err.find("collected 3 of 4 runs") != std::string::npos);
        CHECK(column(out, "run").size() == 3);

        // Running it again runs the missing one only.
        const auto before = mtime(out / "experts.count=8,router.k=2" / "metrics.csv");
        Result again = run(args, d);
        CHECK(again.code == 0);
        CHECK(again.err.find("4 runs: 4 completed (3 finished before)") != std::string::npos);
        CHECK(mtime(out / "experts.count=8,router.k=2" / "metrics.csv") == before);
        CHECK(column(out, "run").size() == 4);
        Result c2 = run(collect, d);
        CHECK(c2.code == 0);
    }

    TEST_CASE("resume after SIGTERM completes every run exactly once with no duplicate rows") {
        const fs::path d = scratch("resume");
        const fs::path out = d / "s";
        const auto args =
            concat({"sweep", quickstart(), "experts.count=4,8", "router.k=1,2"},
                   concat(tiny(150), {"--out", out.string(), "--jobs", "1", "--threads", "1"}));
        Child c = start(args, d);
        // Wait until the first run has finished, then stop the sweep in the middle of the second.
        const fs::path first = out / "experts.count=4,router.k=1" / "summary.csv";
        for (int i = 0; i < 600 && !fs::exists(first); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        REQUIRE(fs::exists(first));
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        ::kill(c.pid, SIGTERM);
        Result r = finish(c);
        CHECK(r.code == 130);
        CHECK(r.err.find("interrupted") != std::string::npos);
        const std::vector<std::string> done_before = column(out, "run");
        std::vector<std::string> statuses = column(out, "status");
        REQUIRE(!statuses.empty());
        CHECK(statuses.size() < 4);
        CHECK(statuses[0] == "completed");
        std::map<std::string, fs::file_time_type> completed;
        std::vector<std::string> runs = column(out, "run");
        for (size_t i = 0; i < runs.size(); ++i)
            if (statuses[i] == "completed")
                completed[runs[i]] = mtime(out / runs[i] / "metrics.csv");

        Result again = run(args, d);
        CHECK_MESSAGE(again.code == 0, again.err);
        std::vector<std::string> names = column(out, "run");
        CHECK(names.size() == 4);
        CHECK(std::set<std::string>(names.begin(), names.end()).size() == 4);
        for (const std::string& s : column(out, "status")) CHECK(s == "completed");
        // The runs that had completed were not run again.
        for (const auto& [name, t] : completed) CHECK(mtime(out / name / "metrics.csv") == t);
        // Each run's own metrics.csv holds its steps once (no run appended to a previous attempt).
        auto rows = parse_csv(slurp(out / "experts.count=4,router.k=2" / "metrics.csv"));
        std::set<std::string> keys;
        for (size_t i = 1; i < rows.size(); ++i)
            CHECK(keys.insert(rows[i][0] + "/" + rows[i][1]).second);
    }

    TEST_CASE(
        "a sweep killed with kill -9 and run again resumes its runs and ends as one that ran "
        "through") {
        const fs::path d = scratch("kill9");
        const auto spec = concat(
            {"sweep", quickstart(), "experts.count=4,8", "router.k=1,2"},
            concat(tiny(200), {"train.checkpoint_every=10", "--jobs", "2", "--threads", "1"}));
        const fs::path whole = d / "whole", killed = d / "killed";
        Result w = run(concat(spec, {"--out", whole.string()}), d);
        REQUIRE_MESSAGE(w.code == 0, w.err);
        Child c = start(concat(spec, {"--out", killed.string()}), d);
        // kill -9 once the first runs are under way (a checkpoint is on disk)
        const fs::path first = killed / "experts.count=4,router.k=1" / "checkpoint.bin";
        for (int i = 0; i < 600 && !fs::exists(first); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ::kill(c.pid, SIGKILL);
        finish(c);
        // the runs die with the sweep (SIGTERM from the kernel: they checkpoint and stop)
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        Result again = run(concat(spec, {"--out", killed.string()}), d);
        CHECK_MESSAGE(again.code == 0, again.err);
        CHECK(slurp(killed / "summary.csv") == slurp(whole / "summary.csv"));
        for (const std::string& name : column(whole, "run"))
            for (const char* f : {"metrics.csv", "layers.csv", "experts.csv", "events.csv"}) {
                CAPTURE(name);
                CAPTURE(f);
                CHECK(slurp(killed / name / f) == slurp(whole / name / f));
            }
    }

    TEST_CASE("a changed config for an existing run directory is refused with exit code 2") {
        const fs::path d = scratch("conflict");
        const fs::path out = d / "s";
        auto args = concat({"sweep", quickstart(), "router.k=1,2"},
                           concat(tiny(), {"--out", out.string(), "--quiet", "--threads", "1"}));
        REQUIRE(run(args, d).code == 0);
        const auto before = mtime(out / "router.k=1" / "metrics.csv");
        auto changed = args;
        changed.push_back("train.lr=0.01");
        Result r = run(changed, d);
        CHECK(r.code == 2);
        const std::string expected = std::string("run directory '")
                                         .append((out / "router.k=1").string())
                                         .append(
                                             "' holds a run of a different config: train.lr is "
                                             "0.003 there, 0.01 in this sweep");
        CHECK(r.err.find(expected) != std::string::npos);
        CHECK(r.err_lines() == 3);  // two directories, and what to do
        CHECK(mtime(out / "router.k=1" / "metrics.csv") == before);
        // A different thread count is not a different config.
        auto threads = args;
        threads.back() = "2";  // --threads 2
        CHECK(run(threads, d).code == 0);
        // --force runs them again.
        changed.push_back("--force");
        CHECK(run(changed, d).code == 0);
        CHECK(slurp(out / "router.k=1" / "config.yaml").find("lr: 0.01 ") != std::string::npos);
    }

    TEST_CASE("a diverging run is recorded and does not stop the sweep and is not rerun") {
        const fs::path d = scratch("diverge");
        const fs::path out = d / "s";
        auto args = concat({"sweep", quickstart(), "train.lr=1e30,0.003", "train.grad_clip=0"},
                           concat(tiny(), {"--out", out.string(), "--threads", "1"}));
        Result r = run(args, d);
        CHECK(r.code == 1);
        CHECK(r.err.find("run 'train.lr=1e+30' diverged") != std::string::npos);
        CHECK(column(out, "status") == std::vector<std::string>{"diverged", "completed"});
        Result again = run(args, d);
        CHECK(again.code == 1);
        CHECK(again.err.find("1 completed (2 finished before), 1 diverged") != std::string::npos);
    }

    TEST_CASE("a run that fails without a summary gets a failed row and a log and the others run") {
        const fs::path d = scratch("failed");
        const fs::path out = d / "s";
        // A directory where the run wants to write metrics.csv: the run fails with an I/O error.
        fs::create_directories(out / "router.k=1" / "metrics.csv");
        auto args = concat({"sweep", quickstart(), "router.k=1,2"},
                           concat(tiny(), {"--out", out.string(), "--threads", "1"}));
        Result r = run(args, d);
        CHECK(r.code == 1);
        CHECK(r.err.find("run 'router.k=1' failed (exit code ") != std::string::npos);
        CHECK(column(out, "run") == std::vector<std::string>{"router.k=1", "router.k=2"});
        CHECK(column(out, "status") == std::vector<std::string>{"failed", "completed"});
        CHECK(slurp(out / "logs" / "router.k=1.log").find("Is a directory") != std::string::npos);
        // Fixed, the sweep runs it again and only it.
        fs::remove_all(out / "router.k=1" / "metrics.csv");
        Result again = run(args, d);
        CHECK(again.code == 0);
        CHECK(again.err.find("2 runs: 2 completed (1 finished before)") != std::string::npos);
        CHECK(column(out, "status") == std::vector<std::string>{"completed", "completed"});
    }

    TEST_CASE("a sweep directory that cannot be written is named, exit 1, and nothing starts") {
        const fs::path d = scratch("unwritable");
        spit(d / "file", "x\n");
        const auto args = [&](const std::string& out) {
            return concat({"sweep", quickstart(), "router.k=1,2"},
                          concat(tiny(), {"--out", out, "--threads", "1"}));
        };
        // Under a regular file: cannot be created, not even by root.
        Result r = run(args((d / "file" / "s").string()), d);
        CHECK(r.code == 1);
        CHECK(r.err.find("cannot create the sweep directory") != std::string::npos);
        // A directory that exists and takes no files (procfs: also for root).
        if (fs::is_directory("/proc/self")) {
            Result p = run(args("/proc/self"), d);
            CHECK(p.code == 1);
            CHECK(p.err.find("sweep directory '/proc/self' cannot be written") !=
                  std::string::npos);
            CHECK(p.err.find("cannot start") == std::string::npos);
            CHECK(p.err_lines() == 1);
        }
    }

    TEST_CASE("bad sweep specs exit 2 with one line each and run nothing") {
        const fs::path d = scratch("bad");
        Result r = run({"sweep", quickstart(), "experts.cont=4,8", "router.k=1,", "router.k=2",
                        "--out", (d / "s").string()},
                       d);
        CHECK(r.code == 2);
        CHECK(r.err_lines() == 3);
        CHECK(r.err.find("moe-sim: error: override 'experts.cont=4,8': experts.cont: unknown key "
                         "(did you mean "
                         "'experts.count'?)") != std::string::npos);
        CHECK_FALSE(fs::exists(d / "s"));
        Result s = run({"sweep", quickstart(), "--shard", "2/2"}, d);
        CHECK(s.code == 2);
        CHECK(s.err_lines() == 1);
        Result j = run({"sweep", quickstart(), "--jobs", "0"}, d);
        CHECK(j.code == 2);
        // a space around '=' is refused, not trimmed; --out "" is not the default directory
        Result sp = run({"sweep", quickstart(), "router.k =1,2", "--list"}, d);
        CHECK(sp.code == 2);
        CHECK(sp.err.find("a space around '='") != std::string::npos);
        CHECK(sp.err.find("write 'router.k=1,2'") != std::string::npos);
        Result e = run({"sweep", quickstart(), "router.k=1,2", "--out", ""}, d);
        CHECK(e.code == 2);
        CHECK(e.err.find("an empty path") != std::string::npos);
    }

    TEST_CASE("shards run disjoint parts and --collect gathers them") {
        const fs::path d = scratch("shards");
        const fs::path out = d / "s";
        auto args = concat({"sweep", quickstart(), "router.k=1,2", "experts.count=4,8,16"},
                           concat(tiny(), {"--out", out.string(), "--threads", "1", "--quiet"}));
        auto shard = [&](const char* s) {
            auto a = args;
            a.push_back("--shard");
            a.push_back(s);
            return run(a, d).code;
        };
        CHECK(shard("0/2") == 0);
        CHECK_FALSE(fs::exists(out / "summary.csv"));  // shards leave the table to --collect
        std::set<std::string> dirs;
        for (const auto& e : fs::directory_iterator(out)) dirs.insert(e.path().filename().string());
        CHECK(dirs == std::set<std::string>{"router.k=1,experts.count=4",
                                            "router.k=1,experts.count=16",
                                            "router.k=2,experts.count=8"});
        CHECK(shard("1/2") == 0);
        auto collect = args;
        collect.push_back("--collect");
        CHECK(run(collect, d).code == 0);
        CHECK(column(out, "run").size() == 6);
    }

    TEST_CASE("a config with a sweep: section runs into the default sweep directory") {
        const fs::path d = scratch("section");
        spit(d / "grid.yaml",
             "name: grid\n"
             "sweep:\n"
             "  grid:\n"
             "    router.k: [1, 2]\n"
             "  seeds: [1, 2]\n"
             "train:\n  steps: 20\n  batch_size: 64\n  log_every: 5\n  eval_every: 10\n"
             "data:\n  train_size: 1024\n  eval_size: 128\n");
        Result r = run({"sweep", "grid.yaml", "--threads", "1", "--jobs", "2"}, d, d);
        CHECK_MESSAGE(r.code == 0, r.err);
        const fs::path out = d / "sweeps" / "grid";
        CHECK(column(out, "run") ==
              std::vector<std::string>{"router.k=1,seed=1", "router.k=1,seed=2",
                                       "router.k=2,seed=1", "router.k=2,seed=2"});
        CHECK(column(out, "seed") == std::vector<std::string>{"1", "2", "1", "2"});
        CHECK(slurp(out / "router.k=2,seed=2" / "config.yaml").find("\nseed: 2 ") !=
              std::string::npos);
    }

}  // TEST_SUITE
