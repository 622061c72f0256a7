// Linear layer y = x W + b: gradient check of dW, db (accumulated) and dx (overwritten), and a
// hand-computed forward.
#include "model/layers/linear.h"

#include <doctest/doctest.h>

#include <vector>

#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

TEST_SUITE("model") {
    TEST_CASE("linear: hand-computed forward") {
        // x (1,2) = [1 2], W (2,3) = [[1 0 -1], [2 1 0]], b = [0.5 0 1]:
        // y = [1+4+0.5, 0+2+0, -1+0+1] = [5.5 2 0]
        auto be = backend_create(Device::cpu, 1);
        ParamStore ps;
        Linear lin;
        lin.declare(ps, "lin", 2, 3);
        ps.finalize(1);
        const float w[6] = {1, 0, -1, 2, 1, 0}, b[3] = {0.5f, 0, 1};
        std::copy_n(w, 6, ps.p(lin.w));
        std::copy_n(b, 3, ps.p(lin.b));
        const float x[2] = {1, 2};
        float y[3];
        lin.forward(*be, ps, y, x, 1);
        CHECK(y[0] == 5.5f);
        CHECK(y[1] == 2.0f);
        CHECK(y[2] == 0.0f);
    }

    TEST_CASE("linear: gradient check of dW, db, dx") {
        const int T = 5, in = 7, out = 3;
        auto be = backend_create(Device::cpu, 1);
        for (bool bias : {true, false}) {
            CAPTURE(bias);
            ParamStore ps;
            Linear lin;
            lin.declare(ps, "lin", in, out, bias);
            ps.finalize(3);
            if (bias) fill_normal(ps.p(lin.b), out, 4, 0.5f);
            std::vector<float> x = normal_vector(size_t(T) * in, 5);
            const std::vector<float> w = normal_vector(size_t(T) * out, 6);
            std::vector<float> y(size_t(T) * out), dx(size_t(T) * in, 123.0f);

            // gradients accumulate: start from a known non-zero value and subtract it afterwards
            std::fill(ps.grad().begin(), ps.grad().end(), 0.25f);
            lin.forward(*be, ps, y.data(), x.data(), T);
            lin.backward(*be, ps, dx.data(), w.data(), x.data(), T);
            for (float& g : ps.grad()) g -= 0.25f;

            auto f = [&] {
                lin.forward(*be, ps, y.data(), x.data(), T);
                return weighted_sum(w.data(), y.data(), y.size());
            };
            expect_gradient(check_gradient(f, ps.p(lin.w), ps.g(lin.w), size_t(in) * out), "dW",
                            1e-3);
            if (bias) expect_gradient(check_gradient(f, ps.p(lin.b), ps.g(lin.b), out), "db", 1e-3);
            expect_gradient(check_gradient(f, x.data(), dx.data(), x.size()), "dx", 1e-3);

            // accumulate_dx adds to dx
            std::vector<float> dx2(dx.size(), 1.0f);
            lin.backward(*be, ps, dx2.data(), w.data(), x.data(), T, true);
            for (size_t i = 0; i < dx.size(); ++i) CHECK(dx2[i] == doctest::Approx(dx[i] + 1.0f));
        }
    }

}  // TEST_SUITE
