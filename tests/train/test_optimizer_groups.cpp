// Parameter groups of the optimizer (train/optimizer.cpp): one normalised-gradient-descent step
// by hand (per routed expert, per other tensor), the router group with its own optimizer and
// learning rate by hand, and the grouped path equal, bit for bit, to the single pass on the
// tensors it leaves alone.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "train/optimizer.h"

using namespace moe;

namespace {

// Tensors of the given names and sizes, values 1, 2, 3, ... over the tensors' elements in order
// (the store pads tensors to 16 floats: the padding stays 0), zero gradients.
ParamStore store_of(const std::vector<std::pair<std::string, size_t>>& tensors) {
    ParamStore ps;
    for (const auto& [name, size] : tensors) ps.add(name, size, Init::zeros);
    ps.finalize(1);
    float v = 1.0f;
    for (size_t k = 0; k < ps.tensors().size(); ++k)
        for (size_t i = 0; i < ps.tensors()[k].size; ++i) ps.p(int(k))[i] = v++;
    return ps;
}

// The tensors' elements in order (without the padding), of the values or of the gradients.
std::vector<float> flat(ParamStore& ps, bool grad = false) {
    std::vector<float> out;
    for (size_t k = 0; k < ps.tensors().size(); ++k)
        for (size_t i = 0; i < ps.tensors()[k].size; ++i)
            out.push_back(grad ? ps.g(int(k))[i] : ps.p(int(k))[i]);
    return out;
}

// Sets the gradients of the tensors' elements in order.
void set_grad(ParamStore& ps, const std::vector<float>& g) {
    size_t j = 0;
    for (size_t k = 0; k < ps.tensors().size(); ++k)
        for (size_t i = 0; i < ps.tensors()[k].size; ++i) ps.g(int(k))[i] = g.at(j++);
    REQUIRE(j == g.size());
}

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("ngd: one step by hand, each expert normalised as one vector, other tensors alone") {
        cpu::CpuBackend be(1);
        // two experts: w1 = (e0: 2 values, e1: 2 values), b1 = (e0, e1)
        ParamStore ps = store_of({{"block0.moe.router.w", 2},
                                  {"block0.moe.experts.w1", 4},
                                  {"block0.moe.experts.b1", 2},
                                  {"head.w", 2}});
        TrainConfig t;
        t.optimizer = OptimizerKind::ngd;
        t.lr = 0.1;
        Optimizer opt(t, ps.size(), 2);
        // router (1, 1): |g| = sqrt 2. expert 0: w1 (3, 0), b1 4: |g| = 5. expert 1: w1 (0, 1),
        // b1 0: |g| = 1. head (0, -2): |g| = 2.
        set_grad(ps, {1, 1, 3, 0, 0, 1, 4, 0, 0, -2});
        const std::vector<float> p0 = flat(ps);
        double sumsq = -1.0;
        opt.step(be, ps, 0.1f, 1, 0.5f, &sumsq);  // the clip scale cancels in g / |g|
        CHECK(sumsq == 1 + 1 + 9 + 1 + 16 + 4);
        const double r2 = 0.1 / std::sqrt(2.0);
        const std::vector<double> want = {p0[0] - r2, p0[1] - r2,  p0[2] - 0.1 * 3 / 5, p0[3],
                                          p0[4],      p0[5] - 0.1, p0[6] - 0.1 * 4 / 5, p0[7],
                                          p0[8],      p0[9] + 0.1};
        const std::vector<float> p = flat(ps), g = flat(ps, true);
        for (size_t i = 0; i < want.size(); ++i) {
            CAPTURE(i);
            CHECK(p[i] == doctest::Approx(want[i]).epsilon(1e-6));
            CHECK(g[i] == 0.0f);
        }
        // an expert with a zero gradient does not move (no 0 / 0): expert 1's w1 alone here
        set_grad(ps, {0, 0, 0, 0, 2, 0, 0, 0, 0, 0});
        opt.step(be, ps, 0.1f, 2);
        const std::vector<float> p2 = flat(ps);
        for (size_t i : {0, 1, 2, 3, 5, 6, 7, 8, 9}) CHECK(p2[i] == p[i]);
        CHECK(p2[4] == doctest::Approx(p[4] - 0.1).epsilon(1e-6));
    }

    TEST_CASE("router group: its own optimizer and learning rate by hand") {
        cpu::CpuBackend be(1);
        ParamStore ps = store_of({{"a.w", 1}, {"block0.moe.router.w", 2}, {"c.w", 1}});
        TrainConfig t;
        t.optimizer = OptimizerKind::adam;
        t.lr = 0.01;
        t.router_optimizer = RouterOptimizer::sgd;
        t.router_lr = 0.5;
        Optimizer opt(t, ps.size(), 1);
        CHECK(opt.router_kind() == OptimizerKind::sgd);
        CHECK(Optimizer::in_router_group("block0.moe.router.w"));
        CHECK_FALSE(Optimizer::in_router_group("block0.moe.experts.w1"));
        // Adam's first step is lr * sign(g); plain SGD moves the router by router_lr * g.
        set_grad(ps, {2, 3, -1, -4});
        opt.step(be, ps, 0.01f, 1);
        const std::vector<float> p = flat(ps);
        CHECK(p[0] == doctest::Approx(1 - 0.01).epsilon(1e-6));
        CHECK(p[1] == doctest::Approx(2 - 1.5).epsilon(1e-6));
        CHECK(p[2] == doctest::Approx(3 + 0.5).epsilon(1e-6));
        CHECK(p[3] == doctest::Approx(4 + 0.01).epsilon(1e-6));
        // the schedule scales both: lr 0.005 passed = half of train.lr, so the router's is 0.25
        set_grad(ps, {0, 1, 0, 0});
        opt.step(be, ps, 0.005f, 2);
        const std::vector<float> p2 = flat(ps);
        CHECK(p2[1] == doctest::Approx(p[1] - 0.25).epsilon(1e-6));
        CHECK(p2[2] == p[2]);
    }

    TEST_CASE("router group: grouped steps equal the single pass on each group, bit for bit") {
        cpu::CpuBackend be(1);
        const std::vector<std::pair<std::string, size_t>> names = {
            {"embed.w", 5}, {"block0.moe.router.w", 3}, {"block0.moe.experts.w1", 4}};
        TrainConfig t;
        t.optimizer = OptimizerKind::adamw;
        t.lr = 0.01;
        TrainConfig g = t;
        g.router_lr = 0.02;  // twice train.lr: the router's elements match a pass at lr 0.02
        ParamStore a = store_of(names), b = store_of(names), c = store_of(names);
        Optimizer single(t, a.size()), grouped(g, b.size()), doubled(t, c.size());
        for (int s = 1; s <= 3; ++s) {
            std::vector<float> grad(12);  // the tensors' elements (the padding's stay 0)
            for (size_t i = 0; i < grad.size(); ++i) grad[i] = std::sin(float(i * 7 + s));
            set_grad(a, grad);
            set_grad(b, grad);
            set_grad(c, grad);
            double sa = 0.0, sb = 0.0;
            single.step(be, a, 0.01f, s, 0.75f, &sa);
            grouped.step(be, b, 0.01f, s, 0.75f, &sb);
            doubled.step(be, c, 0.02f, s, 0.75f);
            CHECK(sa == doctest::Approx(sb).epsilon(1e-12));
            for (size_t k = 0; k < a.tensors().size(); ++k)
                for (size_t i = 0; i < a.tensors()[k].size; ++i) {
                    CAPTURE(k);
                    CAPTURE(i);
                    CHECK(b.p(int(k))[i] == (k == 1 ? c.p(int(k))[i] : a.p(int(k))[i]));
                }
        }
    }
}
