// Configs that cannot fit in this machine's memory, or whose data setup would take hours, are
// refused by validate and run at once, with one line naming the size and the keys (exit 2).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "cli/resource_check.h"
#include "support/process.h"

using moe::test::run_moesim;
using moe::test::scratch_dir;
using moe::test::source_path;

namespace {
const std::string kQuick = "'" + source_path("configs/quickstart.yaml") + "'";
// About 16 TiB of parameters, gradients and Adam state.
const std::string kHuge = " experts.count=4096 experts.d_ff=1048576";
int count_lines(const std::string& s) {
    return int(std::count(s.begin(), s.end(), '\n'));
}
}  // namespace

TEST_SUITE("cli") {
    TEST_CASE(
        "validate and run refuse a config that needs terabytes, naming the size and the keys") {
        auto v = run_moesim("validate " + kQuick + kHuge);
        CHECK(v.code == 2);
        CHECK(count_lines(v.output) == 1);
        CHECK(v.output.rfind("moe-sim: error: this config needs about ", 0) == 0);
        CHECK(v.output.find("TiB of memory") != std::string::npos);
        CHECK(v.output.find("experts.d_ff") != std::string::npos);

        const auto d = scratch_dir("cli_huge");
        auto r = run_moesim("run " + kQuick + kHuge + " --out '" + (d / "run").string() + "'");
        CHECK(r.code == 2);
        CHECK(count_lines(r.output) == 1);
        CHECK(r.output.find("TiB of memory") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(d / "run"));
    }

    TEST_CASE("a data setup of hours is refused with the keys that drive it") {
        auto v = run_moesim("validate " + kQuick +
                            " data.clusters.num_clusters=65536 data.clusters.num_classes=64");
        CHECK(v.code == 2);
        CHECK(count_lines(v.output) == 1);
        CHECK(v.output.find("data setup too large") != std::string::npos);
        CHECK(v.output.find("data.clusters.num_clusters=65536") != std::string::npos);
    }

    TEST_CASE("the estimate of the quick start is small and dominated by its data") {
        moe::Config cfg;
        cfg.data.train_size = 32768;
        const moe::ResourceEstimate e = moe::estimate_resources(cfg);
        CHECK(e.bytes() > 4.0 * 32768 * 32);    // at least the training inputs
        CHECK(e.bytes() < 64.0 * 1024 * 1024);  // well under 64 MiB
        CHECK(e.setup_ops < moe::kMaxSetupOps);
        CHECK(moe::format_bytes(10.0 * 1024 * 1024 * 1024 * 1024) == "10.0 TiB");
    }

}  // TEST_SUITE
