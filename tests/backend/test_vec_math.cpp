// Vectorised host math (backend/cpu/vec_math.cpp): exp and p ln p against libm, results independent of the
// position in the buffer and of the length, exact max, lane sums against a double loop.
#include "backend/vec_math.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using namespace moe;

namespace {

std::vector<float> wavy(size_t n, float scale) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = scale * std::sin(0.731f * float(i) + 0.2f);
    return x;
}

}  // namespace

TEST_SUITE("backend") {
    TEST_CASE(
        "vec_exp_shifted: within 2 ulp-ish of libm, 0 for large negative arguments, exp(0) = 1") {
        std::vector<float> x = wavy(1000, 30.0f), y(1000);
        vec_exp_shifted(y.data(), x.data(), 5.0f, x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            const double ref = std::exp(double(x[i] - 5.0f));
            CHECK(std::fabs(y[i] - ref) <= 3e-7 * ref);
        }
        const float special[3] = {-200.0f, 0.0f, 3.0f};
        float out[3];
        vec_exp_shifted(out, special, 3.0f, 3);
        CHECK(out[0] == 0.0f);
        CHECK(out[2] == 1.0f);
        CHECK(out[1] == doctest::Approx(std::exp(-3.0)).epsilon(1e-6));
        // Below the smallest normal float the result is 0 on every instruction set (Eigen's AVX2 exp
        // alone would give 2.9e-39 here, its AVX-512 exp 0).
        const float under[5] = {-87.5f, -88.7f, -100.0f, -1e30f,
                                -std::numeric_limits<float>::infinity()};
        float out_under[5];
        vec_exp_shifted(out_under, under, 0.0f, 5);
        for (float u : out_under) CHECK(u == 0.0f);
        const float normal_min = -87.0f;  // exp(-87) = 1.6e-38, a normal float
        float out_min;
        vec_exp_shifted(&out_min, &normal_min, 0.0f, 1);
        CHECK(out_min == doctest::Approx(std::exp(-87.0)).epsilon(1e-5));
    }

    TEST_CASE("vec_exp_shifted: a value gives the same bits at any offset, length, and in place") {
        const std::vector<float> x = wavy(700, 4.0f);
        std::vector<float> whole(700);
        vec_exp_shifted(whole.data(), x.data(), 0.5f, x.size());
        for (size_t off : {size_t(1), size_t(3), size_t(255), size_t(256), size_t(511)}) {
            for (size_t len : {size_t(1), size_t(17), size_t(189)}) {
                std::vector<float> part(len);
                vec_exp_shifted(part.data(), x.data() + off, 0.5f, len);
                CHECK(std::memcmp(part.data(), whole.data() + off, len * sizeof(float)) == 0);
            }
        }
        std::vector<float> in_place = x;
        vec_exp_shifted(in_place.data(), in_place.data(), 0.5f, in_place.size());
        CHECK(in_place == whole);
    }

    TEST_CASE("vec_xlogx: p ln p by hand, 0 at p = 0, close to libm") {
        const float p[4] = {0.0f, 1.0f, 0.5f, 0.25f};
        float y[4];
        vec_xlogx(y, p, 4);
        CHECK(y[0] == 0.0f);
        CHECK(y[1] == 0.0f);
        CHECK(y[2] == doctest::Approx(0.5 * std::log(0.5)).epsilon(1e-6));
        CHECK(y[3] == doctest::Approx(0.25 * std::log(0.25)).epsilon(1e-6));
        std::vector<float> q = wavy(600, 0.5f), out(600);
        for (float& v : q) v += 0.5f;  // in [0, 1]
        vec_xlogx(out.data(), q.data(), q.size());
        for (size_t i = 0; i < q.size(); ++i)
            if (q[i] > 0.0f)
                CHECK(out[i] == doctest::Approx(double(q[i]) * std::log(double(q[i])))
                                    .epsilon(1e-6)
                                    .scale(1e-6));
    }

    TEST_CASE("vec_logsumexp: by hand, without overflow, against a double loop") {
        const float two_zeros[2] = {0.0f, 0.0f}, big[2] = {1000.0f, 1000.0f};
        CHECK(vec_logsumexp(two_zeros, 2) == doctest::Approx(std::log(2.0)).epsilon(1e-7));
        CHECK(vec_logsumexp(big, 2) == doctest::Approx(1000.0 + std::log(2.0)).epsilon(1e-9));
        for (size_t n : {size_t(1), size_t(16), size_t(300), size_t(600)}) {
            const std::vector<float> x = wavy(n, 6.0f);
            double m = x[0], s = 0.0;
            for (float v : x) m = std::max(m, double(v));
            for (float v : x) s += std::exp(double(v) - m);
            CHECK(vec_logsumexp(x.data(), n) == doctest::Approx(m + std::log(s)).epsilon(1e-6));
        }
    }

    TEST_CASE(
        "vec_logsumexp_rows equals vec_logsumexp row by row, bit for bit, short and long rows") {
        for (size_t n : {size_t(1), size_t(3), size_t(16), size_t(100), size_t(129), size_t(300)}) {
            CAPTURE(n);
            const size_t rows = 37;
            const std::vector<float> x = wavy(rows * n, 3.0f);
            std::vector<double> lse(rows);
            vec_logsumexp_rows(lse.data(), x.data(), rows, n);
            for (size_t r = 0; r < rows; ++r) CHECK(lse[r] == vec_logsumexp(x.data() + r * n, n));
        }
    }

    TEST_CASE("vec_max is exact, and the lane sums and dot products match a double loop") {
        for (size_t n :
             {size_t(1), size_t(15), size_t(16), size_t(17), size_t(100), size_t(1000)}) {
            CAPTURE(n);
            const std::vector<float> x = wavy(n, 2.0f), y = wavy(n + 3, 1.5f);
            CHECK(vec_max(x.data(), n) == *std::max_element(x.begin(), x.end()));
            double s = 0.0, d = 0.0;
            for (size_t i = 0; i < n; ++i) {
                s += x[i];
                d += double(x[i]) * y[i];
            }
            CHECK(vec_sum(x.data(), n) == doctest::Approx(s).epsilon(1e-5).scale(1.0));
            CHECK(vec_sum_double(x.data(), n) == doctest::Approx(s).epsilon(1e-12).scale(1.0));
            CHECK(vec_dot(x.data(), y.data(), n) == doctest::Approx(d).epsilon(1e-5).scale(1.0));
        }
        // by hand: 1 + 2 + ... + 20 = 210 (exact in float), max at the last position
        std::vector<float> ramp(20);
        for (int i = 0; i < 20; ++i) ramp[size_t(i)] = float(i + 1);
        CHECK(vec_sum(ramp.data(), 20) == 210.0f);
        CHECK(vec_max(ramp.data(), 20) == 20.0f);
        CHECK(vec_dot(ramp.data(), ramp.data(), 3) == 14.0f);
    }

}  // TEST_SUITE
