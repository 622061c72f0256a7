// The default thread count (affinity mask, cgroup CPU quota) and the OpenMP wait policy.
#include <doctest/doctest.h>

#include <string>

#include "backend/threads.h"
#include "support/process.h"

using moe::test::run_moesim;
using moe::test::run_shell;
using moe::test::source_path;

namespace {
// The value of the last "GOMP_SPINCOUNT = '...'" line that libgomp printed (OMP_DISPLAY_ENV).
std::string last_spincount(const std::string& out) {
    const std::string key = "GOMP_SPINCOUNT = '";
    const size_t at = out.rfind(key);
    if (at == std::string::npos) return "";
    const size_t start = at + key.size();
    return out.substr(start, out.find('\'', start) - start);
}
}  // namespace

TEST_SUITE("backend") {
    TEST_CASE("cpu_max_limit reads a cgroup v2 cpu.max") {
        CHECK_FALSE(moe::cpu_max_limit("max 100000\n").has_value());
        CHECK(moe::cpu_max_limit("200000 100000\n") == 2);
        CHECK(moe::cpu_max_limit("150000 100000") == 2);   // 1.5 CPUs: 2 threads
        CHECK(moe::cpu_max_limit("50000 100000\n") == 1);  // half a CPU: still 1
        CHECK(moe::cpu_max_limit("400000 100000") == 4);
        CHECK_FALSE(moe::cpu_max_limit("").has_value());
        CHECK_FALSE(moe::cpu_max_limit("garbage").has_value());
        CHECK_FALSE(moe::cpu_max_limit("-1 100000").has_value());
    }

    TEST_CASE("the default thread count is at most the CPUs this process may run on") {
        const int n = moe::default_threads();
        CHECK(n >= 1);
        CHECK(n <= moe::affinity_cpus());
        if (auto q = moe::cgroup_cpu_limit()) CHECK(n <= *q);
    }

    TEST_CASE("a run pinned to one CPU uses one thread by default") {
        auto r = run_shell("env -u OMP_NUM_THREADS taskset -c 0 '" + std::string(MOESIM_BINARY) +
                           "' bench '" + source_path("configs/quickstart.yaml") +
                           "' --steps 1 --warmup 0 data.train_size=1024 data.eval_size=128");
        REQUIRE(r.code == 0);
        CHECK(r.output.find(", 1 thread(s),") != std::string::npos);
    }

    TEST_CASE("OpenMP threads spin briefly then sleep unless the user chose a wait policy") {
        // libgomp prints its settings at start-up with OMP_DISPLAY_ENV (GOMP_SPINCOUNT); its
        // own default is 300000, passive is 0.
        auto def = run_shell("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose '" +
                             std::string(MOESIM_BINARY) + "' --version");
        REQUIRE(def.code == 0);
        CHECK(last_spincount(def.output) == moe::kDefaultSpinCount);
        CHECK(def.output.find("moe-sim 0.") != std::string::npos);

        auto active =
            run_shell("env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active OMP_DISPLAY_ENV=verbose '" +
                      std::string(MOESIM_BINARY) + "' --version");
        REQUIRE(active.code == 0);
        CHECK(last_spincount(active.output) != "0");
        CHECK(last_spincount(active.output) != "");

        auto spin =
            run_shell("env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1234 OMP_DISPLAY_ENV=verbose '" +
                      std::string(MOESIM_BINARY) + "' --version");
        REQUIRE(spin.code == 0);
        CHECK(last_spincount(spin.output) == "1234");
    }

}  // TEST_SUITE
