// EtaEstimator: the time left from the recent rate, never from a slow first step.
#include "cli/progress.h"

#include <doctest/doctest.h>

using moe::EtaEstimator;

TEST_SUITE("cli") {
    TEST_CASE("ETA: a slow first step does not inflate the estimate") {
        // A 12 s run: the first step takes 3 s, the other 899 take 10 ms each; progress every 10
        // steps.
        EtaEstimator eta;
        const int64_t steps = 900;
        auto t = [](int64_t step) { return 3.0 + 0.01 * double(step - 1); };
        eta.add(10, t(10));
        CHECK_FALSE(eta.eta_s(steps).has_value());  // one sample: no rate yet
        eta.add(20, t(20));
        CHECK_FALSE(eta.eta_s(steps).has_value());  // 0.1 s of data
        for (int64_t s = 30; s <= 100; s += 10) eta.add(s, t(s));
        CHECK_FALSE(eta.eta_s(steps).has_value());  // 0.9 s of data
        eta.add(120, t(120));
        REQUIRE(eta.eta_s(steps).has_value());  // 1.1 s of data
        // The mean since the start (what the display used) is 3.5 times the true time left.
        const double naive = t(120) * double(steps - 120) / 120.0;
        CHECK(naive > 3.0 * 0.01 * double(steps - 120));
        CHECK(*eta.eta_s(steps) == doctest::Approx(0.01 * double(steps - 120)).epsilon(1e-6));
    }

    TEST_CASE("ETA: no estimate before 1 s of data or before two updates after the first") {
        EtaEstimator eta;
        eta.add(1, 5.0);
        eta.add(2, 7.0);  // 2 s after the first sample, but only one update
        CHECK_FALSE(eta.eta_s(10).has_value());
        eta.add(3, 9.0);
        REQUIRE(eta.eta_s(10).has_value());
        CHECK(*eta.eta_s(10) == doctest::Approx(14.0));
        // A repeated step (an eval row after a log row) adds nothing.
        eta.add(3, 9.5);
        CHECK(*eta.eta_s(10) == doctest::Approx(14.0));
        CHECK(*eta.eta_s(3) == doctest::Approx(0.0));
    }

    TEST_CASE("ETA: follows a change of speed within the window") {
        EtaEstimator eta(/*window_s=*/10.0);
        double t = 0;
        int64_t s = 0;
        for (; s < 100; ++s, t += 1.0) eta.add(s, t);  // 1 step/s for 100 s
        CHECK(*eta.eta_s(1000) == doctest::Approx(901.0));
        for (int i = 0; i < 40; ++i, ++s, t += 0.25) eta.add(s, t);  // then 4 steps/s for 10 s
        // Only the last 10 s (4 steps/s) count.
        // The window begins at the last slow sample: 40 steps in 10.75 s, 7 % under 4 steps/s.
        CHECK(*eta.eta_s(1000) == doctest::Approx(double(1000 - (s - 1)) * 10.75 / 40.0));
        CHECK(*eta.eta_s(1000) < 300.0);  // the mean over the whole run says over 600 s
    }

    TEST_CASE("eta_text") {
        CHECK(moe::eta_text(std::nullopt) == "?");
        CHECK(moe::eta_text(42.4) == "42s");
        CHECK(moe::eta_text(150.0) == "2.5m");
        CHECK(moe::eta_text(2.0 * 3600) == "2.0h");
    }

}  // TEST_SUITE
