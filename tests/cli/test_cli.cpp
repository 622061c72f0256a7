// The command line as a user meets it: exit codes, one-line errors, run directories, signals.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <string>

#include "backend/device.h"
#include "support/process.h"

using moe::test::read_text;
using moe::test::run_moesim;
using moe::test::run_shell;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {
const std::string kQuick = "'" + source_path("configs/quickstart.yaml") + "'";
const std::string kTiny =
    " train.steps=20 train.log_every=5 train.eval_every=10 data.train_size=1024 "
    "data.eval_size=128 train.batch_size=64 --quiet --threads 1";

int count_lines(const std::string& s) {
    return int(std::count(s.begin(), s.end(), '\n'));
}
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

    TEST_CASE("--help of every subcommand has the exit codes, an example and where output goes") {
        for (const std::string sub : {"run", "sweep", "validate", "bench"}) {
            CAPTURE(sub);
            auto h = run_moesim(sub + " --help");
            CHECK(h.code == 0);
            CHECK(h.output.find("Exit codes:") != std::string::npos);
            CHECK(h.output.find("130  interrupted") != std::string::npos);
            CHECK(h.output.find("Example:\n  moe-sim " + sub + " configs/") != std::string::npos);
            CHECK(h.output.find("Output: ") != std::string::npos);
        }
        auto h = run_moesim("run --help");
        CHECK(h.output.find("1    the run failed") != std::string::npos);
        CHECK(h.output.find("--out DIR") != std::string::npos);
        CHECK(h.output.find("--threads N") != std::string::npos);
        CHECK(h.output.find("experts.csv") != std::string::npos);
        CHECK(run_moesim("--help").output.find("Exit codes:") != std::string::npos);
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

    TEST_CASE("device cuda without a GPU is a clear error before the run directory exists") {
        if (moe::cuda_device_count() > 0) {
            MESSAGE("a CUDA GPU is visible: device cuda runs here (the CUDA tests cover it)");
            return;
        }
        const auto dir = scratch_dir("cli_cuda") / "x";
        auto r =
            run_moesim("run " + kQuick + " --device cuda --out '" + dir.string() + "'" + kTiny);
        CHECK(r.code == 2);
        CHECK(r.output.find("device 'cuda' is not available: ") != std::string::npos);
        CHECK(r.output.find(moe::cuda_compiled() ? "no CUDA GPU is visible"
                                                 : "built without CUDA") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(dir));
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

    TEST_CASE("an unwritable run directory is an I/O error: exit 1 naming it") {
        const auto d = scratch_dir("cli_unwritable");
        {
            std::ofstream f(d / "file");
            f << "x\n";
        }
        // A path under a regular file cannot be created, not even by root.
        const std::string under_file = (d / "file" / "run").string();
        auto r = run_moesim("run " + kQuick + " --out '" + under_file + "'" + kTiny);
        CHECK(r.code == 1);
        CHECK(r.output.find(under_file) != std::string::npos);
        CHECK(count_lines(r.output) == 1);
        // A file in the way of the run directory.
        auto f = run_moesim("run " + kQuick + " --out '" + (d / "file").string() + "'" + kTiny);
        CHECK(f.code == 1);
        // A directory that cannot be written, also by root: procfs takes no new files.
        if (std::filesystem::is_directory("/proc/self")) {
            auto p = run_moesim("run " + kQuick + " --out /proc/self" + kTiny + " --force");
            CHECK(p.code == 1);
            CHECK(p.output.find("/proc/self") != std::string::npos);
        }
        // Bad usage stays 2: a run directory in use without --force.
        auto u = run_moesim("run " + kQuick + " --out '" + d.string() + "'" + kTiny);
        CHECK(u.code == 2);
    }

    TEST_CASE("a full disk: exit 1, and every CSV file ends at a whole row") {
        const auto d = scratch_dir("cli_full_disk");
        const std::string out = (d / "run").string();
        // A file size limit fails write() as a full disk does (without root or a small file system);
        // SIGXFSZ ignored, as it is for a full disk. `ulimit -f` counts 512- or 1024-byte blocks
        // (dash, bash): 24 blocks lets config.yaml and the small files through either way and stops
        // experts.csv.
        auto r = run_shell("trap '' XFSZ; ulimit -f 24 && exec '" + std::string(MOESIM_BINARY) +
                           "' run " + kQuick + " --out '" + out + "'" + kTiny +
                           " train.steps=400 train.log_every=1 train.eval_every=400");
        CHECK(r.code == 1);
        CHECK(
            r.output.find("experts.csv: cannot write CSV file (cut back to its last whole row)") !=
            std::string::npos);
        for (const auto& e : std::filesystem::directory_iterator(d / "run")) {
            if (e.path().extension() != ".csv") continue;
            CAPTURE(e.path());
            const std::string text = read_text(e.path());
            CHECK((text.empty() || text.back() == '\n'));
        }
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
