// prepare_run_dir: creation, refusal of a non-empty directory, --force removing only run files.
#include "io/run_dir.h"

#include "config/config_error.h"
#include "io_test_util.h"

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using moe::test::io_scratch;
using moe::test::slurp;
using moe::test::spit;

namespace {

std::vector<std::string> sorted_names(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

TEST_SUITE("io") {
    TEST_CASE("prepare_run_dir creates the directory with its parents") {
        const auto root = io_scratch("run_dir_create");
        const auto dir = root / "runs" / "sweep" / "r0";
        moe::prepare_run_dir(dir, false);
        CHECK(fs::is_directory(dir));
        moe::prepare_run_dir(dir, false);  // empty: fine again
        CHECK(fs::is_directory(dir));
    }

    TEST_CASE("prepare_run_dir refuses a non-empty directory without force") {
        const auto dir = io_scratch("run_dir_refuse");
        spit(dir / "metrics.csv", "step\n");
        try {
            moe::prepare_run_dir(dir, false);
            FAIL("expected a UserError");
        } catch (const moe::UserError& e) {
            CHECK(std::string(e.what()) ==
                  "run directory '" + dir.string() +
                      "' exists and is not empty; use --force to overwrite it");
        }
        CHECK(slurp(dir / "metrics.csv") == "step\n");
    }

    TEST_CASE("prepare_run_dir with force removes the previous run's files only") {
        const auto dir = io_scratch("run_dir_force");
        for (const char* f : {"config.yaml", "metrics.csv", "layers.csv", "experts.csv",
                              "specialization.csv", "events.csv", "summary.csv",
                              ".summary.csv.tmp-99-0", "notes.txt", "plot.png", "config.yaml.bak"})
            spit(dir / f, "x");
        fs::create_directories(dir / "figures");
        spit(dir / "figures" / "a.csv", "x");
        moe::prepare_run_dir(dir, true);
        CHECK(sorted_names(dir) ==
              std::vector<std::string>{"config.yaml.bak", "figures", "notes.txt", "plot.png"});
        CHECK(fs::exists(dir / "figures" / "a.csv"));  // sub-directories are never touched
    }

    TEST_CASE("prepare_run_dir: a file in the way is a UserError") {
        const auto root = io_scratch("run_dir_file");
        spit(root / "x", "not a dir");
        CHECK_THROWS_WITH_AS(moe::prepare_run_dir(root / "x", true),
                             doctest::Contains("exists and is not a directory"), moe::UserError);
        CHECK_THROWS_AS(moe::prepare_run_dir(root / "x" / "y", false), moe::UserError);
    }

    TEST_CASE("RunDirLock: one holder at a time, named by its pid, released when it ends") {
        const auto dir = io_scratch("run_dir_lock") / "run";
        {
            moe::RunDirLock a(dir);  // creates the directory
            CHECK(fs::is_directory(dir));
            CHECK(slurp(dir / moe::kRunLockName) == std::to_string(getpid()) + "\n");
            const std::string held =
                "is in use by another moe-sim run (pid " + std::to_string(getpid()) + ")";
            CHECK_THROWS_WITH_AS(moe::RunDirLock{dir}, doctest::Contains(held.c_str()),
                                 moe::UserError);
            // The lock file alone does not make the directory "not empty", and --force keeps it.
            moe::prepare_run_dir(dir, false);
            spit(dir / "metrics.csv", "step\n");
            moe::prepare_run_dir(dir, true);
            CHECK(sorted_names(dir) == std::vector<std::string>{moe::kRunLockName});
        }
        moe::RunDirLock again(dir);  // the first one is gone
        CHECK(fs::exists(dir / moe::kRunLockName));
    }

    TEST_CASE("is_run_output_name") {
        CHECK(moe::is_run_output_name("config.yaml"));
        CHECK(moe::is_run_output_name("layers.csv"));
        CHECK(moe::is_run_output_name(".summary.csv.tmp-5-1"));
        CHECK_FALSE(moe::is_run_output_name("notes.txt"));
        CHECK_FALSE(moe::is_run_output_name("config.yml"));
    }

}  // TEST_SUITE
