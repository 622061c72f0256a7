// The command line as a user meets it: exit codes, one-line errors, run directories, signals.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <string>

#include "support/process.h"

using moe::test::read_text;
using moe::test::run_moesim;
using moe::test::run_shell;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {
const std::string kQuick = "'" + source_path("configs/quickstart.yaml") + "'";
const std::string kTiny = " train.steps=20 train.log_every=5 train.eval_every=10 data.train_size=1024 "
                          "data.eval_size=128 train.batch_size=64 --quiet --threads 1";

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST_SUITE("cli") {

TEST_CASE("--version and --help exit 0") {
    auto v = run_moesim("--version");
    CHECK(v.code == 0);
    CHECK(v.output.find("moe-sim 0.") != std::string::npos);
    auto h = run_moesim("--help");
    CHECK(h.code == 0);
    CHECK(h.output.find("run") != std::string::npos);
    CHECK(run_moesim("run --help").code == 0);
}

TEST_CASE("bad usage exits 2 with one error line") {
    auto r = run_moesim("");
    CHECK(r.code == 2);
    auto u = run_moesim("frobnicate");
    CHECK(u.code == 2);
    CHECK(u.output.rfind("moe-sim: error: ", 0) == 0);
    CHECK(count_lines(u.output) == 1);
}

TEST_CASE("a missing config file is one line and exit 2") {
    auto r = run_moesim("validate /nonexistent/x.yaml");
    CHECK(r.code == 2);
    CHECK(r.output.rfind("moe-sim: error: /nonexistent/x.yaml: ", 0) == 0);
    CHECK(count_lines(r.output) == 1);
}

TEST_CASE("every config error is reported at once, one line each") {
    const auto d = scratch_dir("cli_errors");
    {
        std::ofstream f(d / "bad.yaml");
        f << "experts:\n  count: sixteen\nrouter:\n  kk: 2\ntrain:\n  lr: fast\n";
    }
    auto r = run_moesim("validate '" + (d / "bad.yaml").string() + "'");
    CHECK(r.code == 2);
    CHECK(count_lines(r.output) == 3);
    CHECK(r.output.find("experts.count") != std::string::npos);
    CHECK(r.output.find("router.kk: unknown key") != std::string::npos);
    CHECK(r.output.find("train.lr") != std::string::npos);
    CHECK(r.output.find("bad.yaml:2:10:") != std::string::npos);
}

TEST_CASE("validate prints a config that validates back to itself") {
    const auto d = scratch_dir("cli_roundtrip");
    auto a = run_shell("'" + std::string(MOESIM_BINARY) + "' validate " + kQuick +
                       " router.k=1 balance.alpha=0.003 > '" + (d / "a.yaml").string() + "'");
    REQUIRE(a.code == 0);
    auto b = run_moesim("validate '" + (d / "a.yaml").string() + "'");
    REQUIRE(b.code == 0);
    CHECK(b.output == read_text(d / "a.yaml"));
    CHECK(b.output.find("alpha: 0.003") != std::string::npos);
}

TEST_CASE("device cuda is a clear error, never a silent CPU run") {
    auto r = run_moesim("run " + kQuick + " --device cuda --out '" +
                        scratch_dir("cli_cuda").string() + "/x'" + kTiny);
    CHECK(r.code == 2);
    CHECK(r.output.find("cuda") != std::string::npos);
}

TEST_CASE("run writes its files, refuses to reuse a run directory, and --force overwrites") {
    const auto d = scratch_dir("cli_rundir");
    const std::string out = " --out '" + (d / "run").string() + "'";
    auto r1 = run_moesim("run " + kQuick + out + kTiny);
    REQUIRE(r1.code == 0);
    for (const char* f : {"config.yaml", "metrics.csv", "layers.csv", "experts.csv",
                          "specialization.csv", "events.csv", "summary.csv"})
        CHECK(std::filesystem::exists(d / "run" / f));
    auto r2 = run_moesim("run " + kQuick + out + kTiny);
    CHECK(r2.code == 2);
    CHECK(r2.output.find("--force") != std::string::npos);
    auto r3 = run_moesim("run " + kQuick + out + kTiny + " --force");
    CHECK(r3.code == 0);
}

TEST_CASE("SIGTERM stops a run with exit 130 and status interrupted") {
    const auto d = scratch_dir("cli_sigterm");
    const std::string cmd = "'" + std::string(MOESIM_BINARY) + "' run " + kQuick + " --out '" +
                            (d / "run").string() +
                            "' train.steps=1000000 train.eval_every=1000000 --quiet & pid=$!; "
                            "sleep 1.5; kill -TERM $pid; wait $pid";
    auto r = run_shell(cmd);
    CHECK(r.code == 130);
    const std::string summary = read_text(d / "run" / "summary.csv");
    CHECK(summary.find(",interrupted,") != std::string::npos);
    const std::string metrics = read_text(d / "run" / "metrics.csv");
    CHECK((metrics.empty() || metrics.back() == '\n'));
}

}  // TEST_SUITE
