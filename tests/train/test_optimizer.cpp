// The optimizer steps (backend/cpu/cpu_vector.cpp via train/optimizer.cpp): one Adam, AdamW and
// SGD update computed by hand; the fused bookkeeping (gradient scale, zeroed gradients, the sum
// of squares) against the separate ops; bit-identical results at 1 and 3 threads; the learning
// rate schedule and the clipping factor.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "support/grad_check.h"
#include "train/optimizer.h"

using namespace moe;
using moe::test::bit_equal;

namespace {

// A ParamStore with one tensor holding `values` (and zero gradients).
ParamStore store_with(const std::vector<float>& values) {
    ParamStore ps;
    ps.add("w", values.size(), Init::zeros);
    ps.finalize(1);
    ps.data().host() = values;
    return ps;
}

TrainConfig train_cfg(OptimizerKind kind) {
    TrainConfig t;
    t.optimizer = kind;
    t.beta1 = 0.9;
    t.beta2 = 0.99;
    t.weight_decay = 0.5;
    t.momentum = 0.5;
    return t;
}

}  // namespace

TEST_SUITE("train") {
    TEST_CASE(
        "adam: two steps by hand, gradients zeroed, sum of squares of the gradients on entry") {
        cpu::CpuBackend be(1);
        ParamStore ps = store_with({1.0f, -2.0f});
        Optimizer opt(train_cfg(OptimizerKind::adam), 2);
        // Step 1, g = (0.5, -4): m = 0.1 g, v = 0.01 g^2; m^ = m / 0.1 = g, v^ = v / 0.01 = g^2,
        // so the update is lr * g / (|g| + eps) = lr * sign(g) (eps 1e-8 is below float resolution here).
        ps.grad().host() = {0.5f, -4.0f};
        double sumsq = -1.0;
        opt.step(be, ps, 0.1f, 1, 1.0f, &sumsq);
        CHECK(sumsq == 0.25 + 16.0);
        CHECK(ps.data().host()[0] == doctest::Approx(0.9).epsilon(1e-6));
        CHECK(ps.data().host()[1] == doctest::Approx(-1.9).epsilon(1e-6));
        CHECK(ps.grad().host() == std::vector<float>{0.0f, 0.0f});
        // Step 2, g = (0.5, 0) for the first, a zero gradient for the second:
        //   m1 = 0.9*0.05 + 0.1*0.5 = 0.095, v1 = 0.99*0.0025 + 0.01*0.25 = 0.004975
        //   m^ = 0.095 / (1 - 0.81) = 0.5, v^ = 0.004975 / (1 - 0.9801) = 0.25 -> step lr * 1
        //   m2 = 0.9*(-0.4) = -0.36, v2 = 0.99*0.16 = 0.1584; m^ = -0.36/0.19, v^ = 0.1584/0.0199
        ps.grad().host() = {0.5f, 0.0f};
        opt.step(be, ps, 0.1f, 2);
        CHECK(ps.data().host()[0] == doctest::Approx(0.8).epsilon(1e-5));
        const double m_hat = -0.36 / 0.19, v_hat = 0.1584 / 0.0199;
        CHECK(ps.data().host()[1] ==
              doctest::Approx(-1.9 - 0.1 * m_hat / std::sqrt(v_hat)).epsilon(1e-5));
    }

    TEST_CASE("adamw: decoupled weight decay by hand") {
        cpu::CpuBackend be(1);
        // A zero gradient on the first step leaves m = v = 0, so only the decay acts:
        // p -= lr * wd * p = 2 - 0.1 * 0.5 * 2 = 1.9. Plain Adam leaves p at 2.
        ParamStore ps = store_with({2.0f});
        Optimizer opt(train_cfg(OptimizerKind::adamw), 1);
        opt.step(be, ps, 0.1f, 1);
        CHECK(ps.data().host()[0] == doctest::Approx(1.9).epsilon(1e-6));
        ParamStore plain = store_with({2.0f});
        Optimizer adam(train_cfg(OptimizerKind::adam), 1);
        adam.step(be, plain, 0.1f, 1);
        CHECK(plain.data()[0] == 2.0f);
    }

    TEST_CASE("sgd with momentum: two steps by hand, with a gradient scale") {
        cpu::CpuBackend be(1);
        ParamStore ps = store_with({1.0f});
        Optimizer opt(train_cfg(OptimizerKind::sgd), 1);
        // g scaled by 0.5: v = 1, p = 1 - 0.1 = 0.9; then v = 0.5*1 + 2 = 2.5, p = 0.9 - 0.25 = 0.65
        ps.grad().host() = {2.0f};
        double sumsq = 0.0;
        opt.step(be, ps, 0.1f, 1, 0.5f, &sumsq);
        CHECK(sumsq == 4.0);  // of the gradient as it was, before the scale
        CHECK(ps.data().host()[0] == doctest::Approx(0.9).epsilon(1e-6));
        CHECK(ps.grad().host()[0] == 0.0f);
        ps.grad().host() = {4.0f};
        opt.step(be, ps, 0.1f, 2, 0.5f);
        CHECK(ps.data().host()[0] == doctest::Approx(0.65).epsilon(1e-6));
    }

    TEST_CASE(
        "fused optimizer step equals scale-then-step, its sum of squares equals sum_squares, at "
        "any thread count") {
        // Sizes across the 16384-element pieces and the 256-value blocks of the sum of squares.
        for (OptimizerKind kind : {OptimizerKind::adam, OptimizerKind::adamw, OptimizerKind::sgd}) {
            for (size_t n : {size_t(1), size_t(300), size_t(70001)}) {
                CAPTURE(n);
                std::vector<float> p0(n), g0(n);
                for (size_t i = 0; i < n; ++i) {
                    p0[i] = std::sin(0.37f * float(i)) * 0.5f;
                    g0[i] = std::cos(1.13f * float(i)) * 1e-2f * float(1 + i % 7);
                }
                const float scale = 0.37f;
                std::vector<float> results[3];
                double sums[3];
                const int threads[3] = {1, 3, 1};
                for (int r = 0; r < 3; ++r) {
                    cpu::CpuBackend be(threads[r]);
                    ParamStore ps = store_with(p0);
                    Optimizer opt(train_cfg(kind), n);
                    for (int64_t t = 1; t <= 2; ++t) {
                        ps.grad().host() = g0;
                        if (r < 2) {
                            opt.step(be, ps, 1e-2f, t, scale, &sums[r]);
                        } else {  // the unfused reference: norm, then scale, then step
                            sums[r] = be.sum_squares(ps.grad().host().data(), n);
                            be.scale(ps.grad().host().data(), n, scale);
                            opt.step(be, ps, 1e-2f, t);
                        }
                        CHECK(std::all_of(ps.grad().host().begin(), ps.grad().host().end(),
                                          [](float x) { return x == 0.0f; }));
                    }
                    results[r] = ps.data().host();
                }
                CHECK(bit_equal(results[0], results[1]));
                CHECK(bit_equal(results[0], results[2]));
                CHECK(sums[0] == sums[1]);
                CHECK(sums[0] == sums[2]);
                double naive = 0.0;
                for (float x : g0) naive += double(x) * x;
                CHECK(sums[0] == doctest::Approx(naive).epsilon(1e-6));
            }
        }
    }

    TEST_CASE("clip_scale and the learning-rate schedule") {
        CHECK(clip_scale(4.0, 1.0) == 0.25f);
        CHECK(clip_scale(0.5, 1.0) == 1.0f);
        CHECK(clip_scale(4.0, 0.0) == 1.0f);  // clipping off
        CHECK(clip_scale(std::nan(""), 1.0) == 1.0f);

        TrainConfig t;
        t.lr = 1.0;
        t.min_lr = 0.1;
        t.steps = 110;
        t.warmup_steps = 10;
        t.schedule = Schedule::cosine;
        CHECK(lr_at(t, 1) == doctest::Approx(0.1));  // warmup: lr * s / warmup
        CHECK(lr_at(t, 10) == doctest::Approx(1.0));
        CHECK(lr_at(t, 60) ==
              doctest::Approx(0.55));  // halfway through the decay: the mean of lr and min_lr
        CHECK(lr_at(t, 110) == doctest::Approx(0.1));  // the last step: min_lr
        t.schedule = Schedule::constant;
        CHECK(lr_at(t, 60) == 1.0);
    }

}  // TEST_SUITE
