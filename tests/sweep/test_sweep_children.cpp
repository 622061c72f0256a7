// A sweep's runs die with it: kill -9 of the sweep leaves no run running (and so a rerun never
// starts a run beside a live one).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "io/run_dir.h"
#include "sweep_test_util.h"

using namespace moe::sweep_test;

namespace {

// A live process (not a zombie waiting to be reaped by whoever inherited it).
bool alive(pid_t pid) {
    const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return false;
    const size_t close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

}  // namespace

TEST_SUITE("sweep") {
    TEST_CASE("kill -9 of a sweep takes its running runs with it") {
        const fs::path d = scratch("children");
        const fs::path out = d / "s";
        // Two runs at once that train for a very long time.
        const std::vector<std::string> args = {"sweep",
                                               quickstart(),
                                               "router.k=1,2",
                                               "train.steps=1000000",
                                               "train.eval_every=1000000",
                                               "--out",
                                               out.string(),
                                               "--jobs",
                                               "2",
                                               "--threads",
                                               "2",
                                               "--quiet"};
        Child sweep = start(args, d);
        // Each run writes its pid into its run directory's lock file once it holds it.
        std::vector<pid_t> runs;
        for (int i = 0; i < 600 && runs.size() < 2; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            runs.clear();
            for (const char* name : {"router.k=1", "router.k=2"}) {
                const std::string pid = slurp(out / name / moe::kRunLockName);
                if (!pid.empty() && pid.back() == '\n') runs.push_back(pid_t(std::stoi(pid)));
            }
        }
        REQUIRE(runs.size() == 2);
        CHECK(alive(runs[0]));
        CHECK(alive(runs[1]));

        ::kill(sweep.pid, SIGKILL);
        Result r = finish(sweep);
        CHECK(r.code == 128 + SIGKILL);
        const auto t0 = std::chrono::steady_clock::now();
        while ((alive(runs[0]) || alive(runs[1])) &&
               std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3))
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const bool gone = !alive(runs[0]) && !alive(runs[1]);
        CHECK(gone);
        for (pid_t p : runs)
            if (alive(p)) ::kill(p, SIGKILL);  // leave nothing behind, pass or fail
    }

}  // TEST_SUITE
