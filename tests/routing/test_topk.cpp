// Token-choice top-k router (routing/routers/topk.cpp): hand-computed probabilities, selections
// and gates; ties; the balancing bias; noise keyed by (seed, step); and a gradient check of its
// backward (d_gate and d_probs into d_logits) for every score function and normalisation.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "routing/router.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

std::unique_ptr<Router> topk(int K, ScoreFn score = ScoreFn::softmax, bool normalize = true,
                             double noise = 0.0) {
    RouterConfig rc;
    rc.type = RouterType::topk;
    rc.k = K;
    rc.score = score;
    rc.normalize = normalize ? Normalize::yes : Normalize::no;
    rc.noise = noise;
    return router_create(rc);
}

RoutingPlan route(const Router& r, const std::vector<float>& logits, int T, int N, int K,
                  const RouteContext& ctx = {}) {
    RoutingPlan p;
    p.resize(T, N, K);
    r.route(logits.data(), ctx, p);
    return p;
}

}  // namespace

TEST_SUITE("routing") {

TEST_CASE("topk: softmax probabilities, selection and gates by hand") {
    // logits ln{1,2,3,4}: p = {.1,.2,.3,.4}; top-2 = {3, 2} in descending order;
    // normalised gates {.4/.7, .3/.7}, raw gates {.4, .3}
    const std::vector<float> l = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
    for (bool normalize : {true, false}) {
        CAPTURE(normalize);
        const RoutingPlan p = route(*topk(2, ScoreFn::softmax, normalize), l, 1, 4, 2);
        for (int i = 0; i < 4; ++i) CHECK(p.probs[size_t(i)] == doctest::Approx(0.1 * (i + 1)));
        CHECK(p.sel == std::vector<int>{3, 2});
        CHECK(p.gate[0] == doctest::Approx(normalize ? 4.0 / 7.0 : 0.4));
        CHECK(p.gate[1] == doctest::Approx(normalize ? 3.0 / 7.0 : 0.3));
        CHECK(p.noisy == l);   // no noise: the noisy logits are the logits
    }
}

TEST_CASE("topk: sigmoid scores by hand") {
    // logits {0, ln 3, -ln 3, -ln 9}: sigmoid {.5, .75, .25, .1}, sum 1.6,
    // p = {.3125, .46875, .15625, .0625}; top-2 = {1, 0}; normalised gates {.6, .4}
    const std::vector<float> l = {0.0f, std::log(3.0f), -std::log(3.0f), -std::log(9.0f)};
    const double pe[4] = {0.3125, 0.46875, 0.15625, 0.0625};
    for (bool normalize : {true, false}) {
        CAPTURE(normalize);
        const RoutingPlan p = route(*topk(2, ScoreFn::sigmoid, normalize), l, 1, 4, 2);
        for (int i = 0; i < 4; ++i) CHECK(p.probs[size_t(i)] == doctest::Approx(pe[i]));
        CHECK(p.sel == std::vector<int>{1, 0});
        CHECK(p.gate[0] == doctest::Approx(normalize ? 0.6 : 0.46875));
        CHECK(p.gate[1] == doctest::Approx(normalize ? 0.4 : 0.3125));
    }
}

TEST_CASE("topk: ties go to the lower expert index") {
    for (ScoreFn score : {ScoreFn::softmax, ScoreFn::sigmoid}) {
        CAPTURE(int(score));
        // token 0: experts 1 and 2 tie for the top; token 1: all four tie; token 2: 0 and 3 tie
        // for the second place behind 1
        const std::vector<float> l = {1, 2, 2, 0, /**/ 0, 0, 0, 0, /**/ 1, 3, -1, 1};
        const RoutingPlan p1 = route(*topk(1, score), l, 3, 4, 1);
        CHECK(p1.sel == std::vector<int>{1, 0, 1});
        const RoutingPlan p2 = route(*topk(2, score), l, 3, 4, 2);
        CHECK(p2.sel == std::vector<int>{1, 2, 0, 1, 1, 0});
        const RoutingPlan p3 = route(*topk(3, score), l, 3, 4, 3);
        CHECK(p3.sel == std::vector<int>{1, 2, 0, 0, 1, 2, 1, 0, 3});
        // equal probabilities give equal normalised gates
        CHECK(p2.gate[2] == p2.gate[3]);
        CHECK(p2.gate[2] == doctest::Approx(0.5));
    }
}

TEST_CASE("topk: the bias changes the selection, never the gate weights") {
    // logits {2, 1, 0, 0}: p = e^{2,1,0,0} / (e^2 + e + 2). Without bias top-1 is expert 0;
    // with b = {0, 0, 1, 0} it is expert 2 (p2 + 1 > p0), and its gate is p2 (raw) or 1 (k = 1,
    // normalised), not p2 + 1.
    const std::vector<float> l = {2, 1, 0, 0};
    const double Z = std::exp(2.0) + std::exp(1.0) + 2.0;
    const float bias[4] = {0, 0, 1, 0};
    RouteContext ctx;
    ctx.bias = bias;
    const RoutingPlan raw = route(*topk(1, ScoreFn::softmax, false), l, 1, 4, 1, ctx);
    CHECK(raw.sel[0] == 2);
    CHECK(raw.gate[0] == doctest::Approx(1.0 / Z));
    CHECK(raw.probs[2] == doctest::Approx(1.0 / Z));   // probabilities without the bias
    const RoutingPlan norm = route(*topk(1, ScoreFn::softmax, true), l, 1, 4, 1, ctx);
    CHECK(norm.sel[0] == 2);
    CHECK(norm.gate[0] == doctest::Approx(1.0));
    // k = 2 with the bias: {2, 0}; normalised gates from p alone: p2 / (p0 + p2), p0 / (p0 + p2)
    const RoutingPlan two = route(*topk(2, ScoreFn::softmax, true), l, 1, 4, 2, ctx);
    CHECK(two.sel == std::vector<int>{2, 0});
    CHECK(two.gate[0] == doctest::Approx(1.0 / (1.0 + std::exp(2.0))));
    CHECK(two.gate[1] == doctest::Approx(std::exp(2.0) / (1.0 + std::exp(2.0))));
    const RoutingPlan none = route(*topk(1, ScoreFn::softmax, false), l, 1, 4, 1);
    CHECK(none.sel[0] == 0);
    CHECK(none.gate[0] == doctest::Approx(std::exp(2.0) / Z));
}

TEST_CASE("topk: gating noise only in training, keyed by (seed, step)") {
    const int T = 6, N = 5, K = 2;
    const std::vector<float> l = normal_vector(size_t(T) * N, 3);
    auto r = topk(K, ScoreFn::softmax, true, 0.7);
    RouteContext ctx;
    ctx.seed = 4;
    ctx.noise_step = 9;
    const RoutingPlan eval = route(*r, l, T, N, K, ctx);
    CHECK(eval.noisy == l);
    ctx.training = true;
    const RoutingPlan a = route(*r, l, T, N, K, ctx);
    const RoutingPlan b = route(*r, l, T, N, K, ctx);
    CHECK(a.noisy == b.noisy);   // same key: same noise
    CHECK(a.noisy != l);
    const Rng rng{4, kStreamNoise, 9};
    for (int i = 0; i < T * N; ++i)
        CHECK(a.noisy[size_t(i)] == doctest::Approx(l[size_t(i)] + 0.7f * rng.normal(uint64_t(i))));
    ctx.noise_step = 10;
    CHECK(route(*r, l, T, N, K, ctx).noisy != a.noisy);
}

TEST_CASE("topk: gradient check of backward (d_gate and d_probs into d_logits)") {
    // loss(logits) = sum_s c[s] * gate[s] + sum_{t,i} d[t,i] * p[t,i], with the selection held
    // fixed (probes that change it are skipped).
    const int T = 5, N = 6;
    for (ScoreFn score : {ScoreFn::softmax, ScoreFn::sigmoid}) {
        for (bool normalize : {true, false}) {
            for (int K : {1, 2, 3}) {
                for (bool noisy : {false, true}) {
                    const std::string what =
                        std::string(score == ScoreFn::sigmoid ? "sigmoid" : "softmax") +
                        (normalize ? " normalize" : " raw") + " k=" + std::to_string(K) +
                        (noisy ? " noisy" : "");
                    CAPTURE(what);
                    auto r = topk(K, score, normalize, noisy ? 0.5 : 0.0);
                    std::vector<float> l = normal_vector(size_t(T) * N, 7, 2.0f);
                    const std::vector<float> c = normal_vector(size_t(T) * K, 8);
                    const std::vector<float> d = normal_vector(size_t(T) * N, 9);
                    RouteContext ctx;
                    ctx.training = true;
                    ctx.seed = 2;
                    RoutingPlan p;
                    p.resize(T, N, K);
                    r->route(l.data(), ctx, p);
                    std::vector<float> dl(size_t(T) * N, 99.0f);   // overwritten
                    r->backward(p, c.data(), d.data(), dl.data());
                    auto f = [&] {
                        r->route(l.data(), ctx, p);
                        return weighted_sum(c.data(), p.gate.data(), c.size()) +
                               weighted_sum(d.data(), p.probs.data(), d.size());
                    };
                    auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
                    expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig),
                                    what, 1e-3);
                    // d_probs may be null: then only the gates count
                    std::vector<float> dl_gate(size_t(T) * N);
                    r->route(l.data(), ctx, p);
                    r->backward(p, c.data(), nullptr, dl_gate.data());
                    auto fg = [&] {
                        r->route(l.data(), ctx, p);
                        return weighted_sum(c.data(), p.gate.data(), c.size());
                    };
                    expect_gradient(check_gradient(fg, l.data(), dl_gate.data(), l.size(), {}, sig),
                                    what + " (gates only)", 1e-3);
                }
            }
        }
    }
}

TEST_CASE("grad_check harness: probes that flip the selection are skipped, wrong gradients fail") {
    // Token 0 has two near-tied logits (1e-4 apart, well inside the step h = 1e-3): probing
    // either flips the top-1 and must be skipped, never used.
    const int T = 2, N = 3, K = 1;
    auto r = topk(K, ScoreFn::softmax, false);
    std::vector<float> l = {0.5f, 0.5001f, -1.0f, 2.0f, 0.0f, -1.0f};
    const std::vector<float> c = {1.0f, -0.5f};
    RoutingPlan p;
    p.resize(T, N, K);
    RouteContext ctx;
    r->route(l.data(), ctx, p);
    std::vector<float> dl(size_t(T) * N);
    r->backward(p, c.data(), nullptr, dl.data());
    auto f = [&] {
        r->route(l.data(), ctx, p);
        return weighted_sum(c.data(), p.gate.data(), c.size());
    };
    auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
    const GradCheckResult ok = check_gradient(f, l.data(), dl.data(), l.size(), {}, sig);
    CHECK(ok.skipped == 2);
    CHECK(ok.probes == 4);
    CHECK(ok.rel_error < 1e-3);
    CHECK(l == std::vector<float>{0.5f, 0.5001f, -1.0f, 2.0f, 0.0f, -1.0f});   // restored
    // a negative control: a gradient off by 10% in one entry is caught
    std::vector<float> bad = dl;
    bad[3] *= 1.1f;
    CHECK(check_gradient(f, l.data(), bad.data(), l.size(), {}, sig).rel_error > 1e-2);
}

}  // TEST_SUITE
