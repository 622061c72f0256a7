// Token-choice top-k router (routing/routers/topk.cpp): hand-computed probabilities, selections
// and gates; ties; the balancing bias; noise keyed by (seed, step); and a gradient check of its
// backward (d_gate and d_probs into d_logits) for every score function and normalisation.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend/rng.h"
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

// What the tests pass to route() (the MoE layer's Pass, seed and bias in one).
struct RouteContext {
    bool training = false;
    uint64_t seed = 0;
    uint64_t noise_step = 0;
    const float* bias = nullptr;
};

// A router's output for one batch: its state and its plan, with copies of the state's arrays
// trimmed to this batch (probs, noisy: (T, N); sel, gate: the K slots per token, before capacity).
struct Routed {
    const Router* r = nullptr;
    int T = 0, N = 0, K = 0;
    RouterState st;
    RoutingPlan plan;
    std::vector<float> probs, noisy, gate;
    std::vector<int> sel;

    Routed(const Router& router, int T_, int N_, int K_) : r(&router), T(T_), N(N_), K(K_) {
        r->reserve(st, T, N, 0.0);
        plan.reserve(T, N, r->max_assignments(T, N, 0.0));
    }
    void run(const float* logits, const RouteContext& ctx) {
        Pass pass;
        pass.training = ctx.training;
        pass.noise_key = ctx.noise_step;
        r->route(logits, T, ctx.bias, pass, ctx.seed, st, plan);
        const size_t TN = size_t(T) * N, TK = size_t(T) * K;
        probs.assign(st.probs.begin(), st.probs.begin() + ptrdiff_t(TN));
        noisy.assign(st.noisy.begin(), st.noisy.begin() + ptrdiff_t(TN));
        sel.assign(st.sel.begin(), st.sel.begin() + ptrdiff_t(TK));
        gate.assign(st.sel_gate.begin(), st.sel_gate.begin() + ptrdiff_t(TK));
    }
};

Routed route(const Router& r, const std::vector<float>& logits, int T, int N, int K,
             const RouteContext& ctx = {}) {
    Routed p(r, T, N, K);
    p.run(logits.data(), ctx);
    return p;
}

std::unique_ptr<Router> topk_with(int K, const TopkConfig& t, double scale = 1.0,
                                  bool normalize = true, ScoreFn score = ScoreFn::softmax) {
    RouterConfig rc;
    rc.k = K;
    rc.score = score;
    rc.normalize = normalize ? Normalize::yes : Normalize::no;
    rc.scale = scale;
    rc.topk = t;
    return router_create(rc);
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("topk: softmax probabilities, selection and gates by hand") {
        // logits ln{1,2,3,4}: p = {.1,.2,.3,.4}; top-2 = {3, 2} in descending order;
        // normalised gates {.4/.7, .3/.7}, raw gates {.4, .3}
        const std::vector<float> l = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
        for (bool normalize : {true, false}) {
            CAPTURE(normalize);
            const Routed p = route(*topk(2, ScoreFn::softmax, normalize), l, 1, 4, 2);
            for (int i = 0; i < 4; ++i) CHECK(p.probs[size_t(i)] == doctest::Approx(0.1 * (i + 1)));
            CHECK(p.sel == std::vector<int>{3, 2});
            CHECK(p.gate[0] == doctest::Approx(normalize ? 4.0 / 7.0 : 0.4));
            CHECK(p.gate[1] == doctest::Approx(normalize ? 3.0 / 7.0 : 0.3));
            CHECK(p.noisy == l);  // no noise: the noisy logits are the logits
        }
    }

    TEST_CASE("topk: sigmoid scores by hand") {
        // logits {0, ln 3, -ln 3, -ln 9}: sigmoid s = {.5, .75, .25, .1}, sum 1.6,
        // p = {.3125, .46875, .15625, .0625}; top-2 of s = {1, 0}; normalised gates {.6, .4}; raw
        // gates are the raw sigmoid scores {.75, .5} (DeepSeek-V3), not p
        const std::vector<float> l = {0.0f, std::log(3.0f), -std::log(3.0f), -std::log(9.0f)};
        const double pe[4] = {0.3125, 0.46875, 0.15625, 0.0625};
        for (bool normalize : {true, false}) {
            CAPTURE(normalize);
            const Routed p = route(*topk(2, ScoreFn::sigmoid, normalize), l, 1, 4, 2);
            for (int i = 0; i < 4; ++i) CHECK(p.probs[size_t(i)] == doctest::Approx(pe[i]));
            CHECK(p.sel == std::vector<int>{1, 0});
            CHECK(p.gate[0] == doctest::Approx(normalize ? 0.6 : 0.75));
            CHECK(p.gate[1] == doctest::Approx(normalize ? 0.4 : 0.5));
        }
    }

    TEST_CASE("topk: sigmoid selection adds the bias to the raw score, at the paper's scale") {
        // s = sigmoid(logits) = {.5, .75, .25, .1}, p = s / 1.6 = {.3125, .46875, .15625, .0625}.
        // b2 = .3: s2 + b2 = .55 > s0 = .5, top-2 = {1, 2}. b2 = .2: s2 + b2 = .45 < .5, top-2 stays
        // {1, 0}, whereas adding the bias to p (p2 + .2 = .356 > p0 = .3125) would have picked 2:
        // the bias acts on the raw score, at the scale of the paper's u.
        const std::vector<float> l = {0.0f, std::log(3.0f), -std::log(3.0f), -std::log(9.0f)};
        auto r = topk(2, ScoreFn::sigmoid, false);
        const float b3[4] = {0, 0, 0.3f, 0};
        RouteContext ctx;
        ctx.bias = b3;
        CHECK(route(*r, l, 1, 4, 2, ctx).sel == std::vector<int>{1, 2});
        const float b2[4] = {0, 0, 0.2f, 0};
        ctx.bias = b2;
        const Routed p = route(*r, l, 1, 4, 2, ctx);
        CHECK(p.sel == std::vector<int>{1, 0});
        CHECK(p.gate[1] == doctest::Approx(0.5));  // the raw score, never score + bias
    }

    TEST_CASE("topk: softmax of logits of +-1000 is finite (the max is subtracted)") {
        const std::vector<float> l = {1000.0f, -1000.0f, 999.0f, 0.0f};
        const Routed p = route(*topk(2), l, 1, 4, 2);
        for (float v : p.probs) CHECK(std::isfinite(v));
        CHECK(p.probs[0] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))));
        CHECK(p.sel == std::vector<int>{0, 2});
    }

    TEST_CASE("topk: the plan lists the slots by expert (token order) and by token (slot order)") {
        // 3 tokens, 4 experts, k = 2: choices (best first) {2, 0}, {0, 3}, {2, 3}.
        const float M = 5.0f;
        const std::vector<float> l = {2, -M, 3, -M, /**/ 3, -M, -M, 2, /**/ -M, -M, 3, 2};
        const Routed p = route(*topk(2), l, 3, 4, 2);
        CHECK(p.sel == std::vector<int>{2, 0, 0, 3, 2, 3});
        const RoutingPlan& plan = p.plan;
        CHECK(plan.A == 6);
        CHECK(plan.routed == std::vector<int>{2, 0, 2, 2});
        CHECK(plan.dropped == std::vector<int>{0, 0, 0, 0});
        CHECK(std::vector<int>(plan.offsets.begin(), plan.offsets.begin() + 5) ==
              std::vector<int>{0, 2, 2, 4, 6});
        // expert 0: slots 1 (token 0), 2 (token 1); expert 2: slots 0, 4; expert 3: slots 3, 5
        CHECK(std::vector<int>(plan.slot.begin(), plan.slot.begin() + 6) ==
              std::vector<int>{1, 2, 0, 4, 3, 5});
        CHECK(std::vector<int>(plan.token.begin(), plan.token.begin() + 6) ==
              std::vector<int>{0, 1, 0, 2, 1, 2});
        for (int a = 0; a < 6; ++a)
            CHECK(plan.gate[size_t(a)] == p.gate[size_t(plan.slot[size_t(a)])]);
        // by token, in slot order (best choice first): token 0 {a2 (slot 0), a0 (slot 1)}, ...
        RoutingPlan indexed = plan;
        std::vector<int> scratch;
        plan_index_by_token(indexed, scratch);
        CHECK(std::vector<int>(indexed.tok_offsets.begin(), indexed.tok_offsets.begin() + 4) ==
              std::vector<int>{0, 2, 4, 6});
        CHECK(std::vector<int>(indexed.tok_assign.begin(), indexed.tok_assign.begin() + 6) ==
              std::vector<int>{2, 0, 1, 4, 3, 5});
    }

    TEST_CASE("topk: ties go to the lower expert index") {
        for (ScoreFn score : {ScoreFn::softmax, ScoreFn::sigmoid}) {
            CAPTURE(int(score));
            // token 0: experts 1 and 2 tie for the top; token 1: all four tie; token 2: 0 and 3 tie
            // for the second place behind 1
            const std::vector<float> l = {1, 2, 2, 0, /**/ 0, 0, 0, 0, /**/ 1, 3, -1, 1};
            const Routed p1 = route(*topk(1, score), l, 3, 4, 1);
            CHECK(p1.sel == std::vector<int>{1, 0, 1});
            const Routed p2 = route(*topk(2, score), l, 3, 4, 2);
            CHECK(p2.sel == std::vector<int>{1, 2, 0, 1, 1, 0});
            const Routed p3 = route(*topk(3, score), l, 3, 4, 3);
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
        const Routed raw = route(*topk(1, ScoreFn::softmax, false), l, 1, 4, 1, ctx);
        CHECK(raw.sel[0] == 2);
        CHECK(raw.gate[0] == doctest::Approx(1.0 / Z));
        CHECK(raw.probs[2] == doctest::Approx(1.0 / Z));  // probabilities without the bias
        const Routed norm = route(*topk(1, ScoreFn::softmax, true), l, 1, 4, 1, ctx);
        CHECK(norm.sel[0] == 2);
        CHECK(norm.gate[0] == doctest::Approx(1.0));
        // k = 2 with the bias: {2, 0}; normalised gates from p alone: p2 / (p0 + p2), p0 / (p0 + p2)
        const Routed two = route(*topk(2, ScoreFn::softmax, true), l, 1, 4, 2, ctx);
        CHECK(two.sel == std::vector<int>{2, 0});
        CHECK(two.gate[0] == doctest::Approx(1.0 / (1.0 + std::exp(2.0))));
        CHECK(two.gate[1] == doctest::Approx(std::exp(2.0) / (1.0 + std::exp(2.0))));
        const Routed none = route(*topk(1, ScoreFn::softmax, false), l, 1, 4, 1);
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
        const Routed eval = route(*r, l, T, N, K, ctx);
        CHECK(eval.noisy == l);
        ctx.training = true;
        const Routed a = route(*r, l, T, N, K, ctx);
        const Routed b = route(*r, l, T, N, K, ctx);
        CHECK(a.noisy == b.noisy);  // same key: same noise
        CHECK(a.noisy != l);
        const Rng rng{4, kStreamNoise, 9};
        for (int i = 0; i < T * N; ++i)
            CHECK(a.noisy[size_t(i)] ==
                  doctest::Approx(l[size_t(i)] + 0.7f * rng.normal(uint64_t(i))));
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
                        Routed p(*r, T, N, K);
                        p.run(l.data(), ctx);
                        std::vector<float> dl(size_t(T) * N, 99.0f);  // overwritten
                        r->backward(p.st, c.data(), d.data(), dl.data());
                        auto f = [&] {
                            p.run(l.data(), ctx);
                            return weighted_sum(c.data(), p.gate.data(), c.size()) +
                                   weighted_sum(d.data(), p.probs.data(), d.size());
                        };
                        auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
                        expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig),
                                        what, 1e-3);
                        // d_probs may be null: then only the gates count
                        std::vector<float> dl_gate(size_t(T) * N);
                        p.run(l.data(), ctx);
                        r->backward(p.st, c.data(), nullptr, dl_gate.data());
                        auto fg = [&] {
                            p.run(l.data(), ctx);
                            return weighted_sum(c.data(), p.gate.data(), c.size());
                        };
                        expect_gradient(
                            check_gradient(fg, l.data(), dl_gate.data(), l.size(), {}, sig),
                            what + " (gates only)", 1e-3);
                    }
                }
            }
        }
    }

    TEST_CASE(
        "grad_check harness: probes that flip the selection are skipped, wrong gradients fail") {
        // Token 0 has two near-tied logits (1e-4 apart, well inside the step h = 1e-3): probing
        // either flips the top-1 and must be skipped, never used.
        const int T = 2, N = 3, K = 1;
        auto r = topk(K, ScoreFn::softmax, false);
        std::vector<float> l = {0.5f, 0.5001f, -1.0f, 2.0f, 0.0f, -1.0f};
        const std::vector<float> c = {1.0f, -0.5f};
        Routed p(*r, T, N, K);
        RouteContext ctx;
        p.run(l.data(), ctx);
        std::vector<float> dl(size_t(T) * N);
        r->backward(p.st, c.data(), nullptr, dl.data());
        auto f = [&] {
            p.run(l.data(), ctx);
            return weighted_sum(c.data(), p.gate.data(), c.size());
        };
        auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
        const GradCheckResult ok = check_gradient(f, l.data(), dl.data(), l.size(), {}, sig);
        CHECK(ok.skipped == 2);
        CHECK(ok.probes == 4);
        CHECK(ok.rel_error < 1e-3);
        CHECK(l == std::vector<float>{0.5f, 0.5001f, -1.0f, 2.0f, 0.0f, -1.0f});  // restored
        // a negative control: a gradient off by 10% in one entry is caught
        std::vector<float> bad = dl;
        bad[3] *= 1.1f;
        CHECK(check_gradient(f, l.data(), bad.data(), l.size(), {}, sig).rel_error > 1e-2);
    }

    TEST_CASE("topk: router.scale multiplies the gates, normalised or raw") {
        // p = {.1, .2, .3, .4}: top-2 {3, 2}; gates 2.5 * {4/7, 3/7} or 2.5 * {.4, .3}
        const std::vector<float> l = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
        for (bool normalize : {true, false}) {
            CAPTURE(normalize);
            const Routed p = route(*topk_with(2, {}, 2.5, normalize), l, 1, 4, 2);
            CHECK(p.sel == std::vector<int>{3, 2});
            CHECK(p.gate[0] == doctest::Approx(2.5 * (normalize ? 4.0 / 7.0 : 0.4)));
            CHECK(p.gate[1] == doctest::Approx(2.5 * (normalize ? 3.0 / 7.0 : 0.3)));
            CHECK(p.probs[3] == doctest::Approx(0.4));  // p is not scaled
        }
    }

    TEST_CASE("topk: GShard's random second expert, dispatched iff 2 g2 > u") {
        // T tokens over N = 4 experts; token t's second choice has the normalised weight
        // g2 = s2 / (s1 + s2) and is kept iff 2 g2 > u, u = uniform of (seed, kStreamSecondExpert,
        // noise key, t). Equal top-2 logits (g2 = 1/2) always keep it (u < 1).
        const int T = 64, N = 4;
        std::vector<float> l(size_t(T) * N, -4.0f);
        for (int t = 0; t < T; ++t) {
            l[size_t(t) * N + size_t(t % N)] = 1.0f;
            l[size_t(t) * N + size_t((t + 1) % N)] = t < 8 ? 1.0f : 1.0f - 0.05f * float(t % 32);
        }
        TopkConfig cfg;
        cfg.second_expert = SecondExpert::random;
        auto r = topk_with(2, cfg);
        RouteContext ctx;
        ctx.seed = 5;
        ctx.noise_step = 3;
        const Routed p = route(*r, l, T, N, 2, ctx);
        const Rng rng{5, kStreamSecondExpert, 3};
        std::vector<int> routed(size_t(N), 0);
        int kept = 0;
        for (int t = 0; t < T; ++t) {
            CAPTURE(t);
            const float* pr = p.probs.data() + size_t(t) * N;
            const int e1 = p.sel[size_t(t) * 2], e2 = p.sel[size_t(t) * 2 + 1];
            const double g2 = pr[e2] / (pr[e1] + pr[e2]);
            const bool keep = 2.0 * g2 > double(rng.uniform(uint64_t(t)));
            if (t < 8) CHECK(keep);
            routed[size_t(e1)]++;
            if (keep) routed[size_t(e2)]++, ++kept;
            // sel keeps the real second expert and the first gate keeps its value (1 - g2)
            CHECK((e1 == t % N || e2 == t % N));
            CHECK((e1 == (t + 1) % N || e2 == (t + 1) % N));
            CHECK(p.gate[size_t(t) * 2] == doctest::Approx(1.0 - g2));
        }
        CHECK(p.plan.routed == routed);  // a skipped slot is not routed
        CHECK(p.plan.A == T + kept);
        CHECK(kept > 8);
        CHECK(kept < T);
        // a skipped slot is absent from the plan: no assignment has an odd slot of a skipped token
        for (int a = 0; a < p.plan.A; ++a) {
            const int s = p.plan.slot[size_t(a)];
            CHECK(p.plan.token[size_t(a)] == s / 2);
        }
        // the same key draws the same coins; another noise key other ones
        CHECK(route(*r, l, T, N, 2, ctx).plan.routed == routed);
        ctx.noise_step = 4;
        CHECK(route(*r, l, T, N, 2, ctx).plan.A != T + kept);
    }

    TEST_CASE("topk: group-limited selection keeps the groups of highest top-2 sum") {
        // Scores proportional to w = {9, .1 | 5, 5 | 8, 1 | 2, 2} (N = 8, 4 groups of 2). Group
        // scores (sum of the top 2): 9.1, 10, 9, 4. topk_groups = 2 keeps groups 1 and 0; the top-2
        // within them: expert 0 (9) and expert 2 (5, tied with 3: the lower index). Without groups the
        // top-2 is {0, 4}; with the max as the group score it would keep groups 0 and 2: {0, 4}.
        const double w[8] = {9, 0.1, 5, 5, 8, 1, 2, 2};
        std::vector<float> l(8);
        for (int i = 0; i < 8; ++i) l[size_t(i)] = float(std::log(w[i]));
        TopkConfig g;
        g.groups = 4;
        g.topk_groups = 2;
        const Routed p = route(*topk_with(2, g), l, 1, 8, 2);
        CHECK(p.sel == std::vector<int>{0, 2});
        CHECK(p.gate[0] == doctest::Approx(9.0 / 14.0));
        CHECK(route(*topk_with(2, {}), l, 1, 8, 2).sel == std::vector<int>{0, 4});
        // three groups kept: groups 1, 0, 2; k = 3 picks 0 (9), 4 (8), 2 (5)
        g.topk_groups = 3;
        CHECK(route(*topk_with(3, g), l, 1, 8, 3).sel == std::vector<int>{0, 4, 2});
        // one group of each expert (groups = N): the group score is the expert's own; = plain top-k
        g.groups = 8;
        g.topk_groups = 2;
        CHECK(route(*topk_with(2, g), l, 1, 8, 2).sel == std::vector<int>{0, 4});
        // the bias enters the group score. Softmax scores are s = w / Z (Z = 32.1); b = 8 / Z on
        // expert 6 makes group 3 score (10 + 2) / Z, above group 1 (10 / Z): groups 3 and 1 are
        // kept, and the top-2 of s + b among {2, 3, 6, 7} is 6 (10 / Z), then 2 (5 / Z, tied with 3)
        const float bias[8] = {0, 0, 0, 0, 0, 0, float(8.0 / 32.1), 0};
        RouteContext ctx;
        ctx.bias = bias;
        g.groups = 4;
        const Routed pb = route(*topk_with(2, g), l, 1, 8, 2, ctx);
        CHECK(pb.sel == std::vector<int>{6, 2});
        CHECK(pb.gate[0] == doctest::Approx(2.0 / 7.0));  // gates from s alone: 2 / (2 + 5)
    }

    TEST_CASE("topk: gradient check with scale, a random second expert and groups") {
        const int T = 6, N = 8;
        TopkConfig rnd;
        rnd.second_expert = SecondExpert::random;
        TopkConfig grp;
        grp.groups = 4;
        grp.topk_groups = 2;
        struct Case {
            std::string what;
            TopkConfig t;
            double scale;
            ScoreFn score;
        };
        for (const Case& c : {Case{"scale", {}, 2.5, ScoreFn::softmax},
                              Case{"random second", rnd, 1.0, ScoreFn::softmax},
                              Case{"groups sigmoid scale", grp, 2.5, ScoreFn::sigmoid}}) {
            for (bool normalize : {true, false}) {
                const std::string what = c.what + (normalize ? " normalize" : " raw");
                CAPTURE(what);
                auto r = topk_with(2, c.t, c.scale, normalize, c.score);
                std::vector<float> l = normal_vector(size_t(T) * N, 17, 2.0f);
                const std::vector<float> cg = normal_vector(size_t(T) * 2, 18);
                const std::vector<float> d = normal_vector(size_t(T) * N, 19);
                RouteContext ctx;
                ctx.training = true;
                Routed p(*r, T, N, 2);
                p.run(l.data(), ctx);
                std::vector<float> dl(size_t(T) * N);
                r->backward(p.st, cg.data(), d.data(), dl.data());
                auto f = [&] {
                    p.run(l.data(), ctx);
                    return weighted_sum(cg.data(), p.gate.data(), cg.size()) +
                           weighted_sum(d.data(), p.probs.data(), d.size());
                };
                auto sig = [&] {
                    Signature s(p.sel.begin(), p.sel.end());
                    s.insert(s.end(), p.plan.slot.begin(), p.plan.slot.begin() + p.plan.A);
                    return s;
                };
                expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig), what,
                                1e-3);
            }
        }
    }

    TEST_CASE("topk: learned noise, 2N logits, std = softplus of the noise logits, training only") {
        // T = 2, N = 3, K = 1. Row t: clean logits l[t, 0..2], noise logits l[t, 3..5].
        const int T = 2, N = 3, K = 1;
        TopkConfig t;
        t.noise = TopkNoise::learned;
        auto r = topk_with(K, t);
        CHECK(r->logit_width(N) == 2 * N);
        const std::vector<float> l = {2.0f, 0.0f, -1.0f, 0.0f,  -30.0f, 1.5f,
                                      0.5f, 1.0f, 0.0f,  -2.0f, 3.0f,   0.25f};
        RouteContext ctx;
        ctx.seed = 4;
        ctx.noise_step = 9;
        // evaluation: no noise, the noise logits change nothing; token 0 -> expert 0, token 1 ->
        // expert 1, gate = p (k = 1, raw)
        const Routed eval = route(*r, l, T, N, K, ctx);
        CHECK(eval.noisy == std::vector<float>{2.0f, 0.0f, -1.0f, 0.5f, 1.0f, 0.0f});
        CHECK(eval.sel == std::vector<int>{0, 1});
        CHECK_FALSE(eval.st.noise_learned);
        // training: noisy = clean + softplus(n) * eps, eps keyed as router.noise's (seed 4,
        // kStreamNoise, key 9, t*N + i); softplus(0) = ln 2, softplus(-30) ~ 9.4e-14
        ctx.training = true;
        const Routed a = route(*r, l, T, N, K, ctx);
        CHECK(a.st.noise_learned);
        const Rng rng{4, kStreamNoise, 9};
        for (int tt = 0; tt < T; ++tt)
            for (int i = 0; i < N; ++i) {
                const double n = l[size_t(tt * 2 * N + N + i)];
                const double sd = std::log1p(std::exp(n));
                const double e = rng.normal(uint64_t(tt * N + i));
                CHECK(a.st.noise_stds[size_t(tt * N + i)] == doctest::Approx(sd).epsilon(1e-6));
                CHECK(a.noisy[size_t(tt * N + i)] ==
                      doctest::Approx(l[size_t(tt * 2 * N + i)] + sd * e).epsilon(1e-5));
            }
        CHECK(a.noisy[1] == doctest::Approx(0.0).epsilon(1e-9));  // std ~ 1e-13: no noise
        CHECK(a.st.noise_stds[0] == doctest::Approx(std::log(2.0)));
        // a very large noise logit: softplus(v) = v without overflow
        std::vector<float> big = l;
        big[3] = 200.0f;
        const Routed b = route(*r, big, T, N, K, ctx);
        CHECK(b.st.noise_stds[0] == doctest::Approx(200.0));
    }

    TEST_CASE("topk: gradient check of backward with learned noise, into both logit halves") {
        // loss(logits) = sum c * gate + sum d * p over the (T, 2N) logits, the noise draws fixed
        // (same seed and key at every probe), the selection held fixed
        const int T = 5, N = 6;
        TopkConfig t;
        t.noise = TopkNoise::learned;
        for (bool normalize : {true, false}) {
            for (int K : {1, 2, 3}) {
                const std::string what =
                    std::string(normalize ? "normalize" : "raw") + " k=" + std::to_string(K);
                CAPTURE(what);
                auto r = topk_with(K, t, 1.0, normalize);
                std::vector<float> l = normal_vector(size_t(T) * 2 * N, 7, 1.5f);
                const std::vector<float> c = normal_vector(size_t(T) * K, 8);
                const std::vector<float> d = normal_vector(size_t(T) * N, 9);
                RouteContext ctx;
                ctx.training = true;
                ctx.seed = 2;
                Routed p(*r, T, N, K);
                p.run(l.data(), ctx);
                std::vector<float> dl(l.size(), 99.0f);  // overwritten
                r->backward(p.st, c.data(), d.data(), dl.data());
                double noise_grad = 0.0;
                for (int tt = 0; tt < T; ++tt)
                    for (int i = N; i < 2 * N; ++i)
                        noise_grad += std::fabs(dl[size_t(tt * 2 * N + i)]);
                CHECK(noise_grad > 1e-3);  // the noise logits do get a gradient
                auto f = [&] {
                    p.run(l.data(), ctx);
                    return weighted_sum(c.data(), p.gate.data(), c.size()) +
                           weighted_sum(d.data(), p.probs.data(), d.size());
                };
                auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
                expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig), what,
                                1e-3);
            }
        }
        // evaluation state: no noise, so the noise logits get exactly 0
        auto r = topk_with(2, t);
        std::vector<float> l = normal_vector(size_t(T) * 2 * N, 7, 1.5f);
        const std::vector<float> c = normal_vector(size_t(T) * 2, 8);
        Routed p(*r, T, N, 2);
        p.run(l.data(), RouteContext{});
        std::vector<float> dl(l.size(), 99.0f);
        r->backward(p.st, c.data(), nullptr, dl.data());
        for (int tt = 0; tt < T; ++tt)
            for (int i = N; i < 2 * N; ++i) CHECK(dl[size_t(tt * 2 * N + i)] == 0.0f);
    }
    TEST_CASE("topk: uniform gating noise router.noise * U of 0 to 1 only in training") {
        // router.noise_kind: uniform (Chen et al. 2022): noisy = l + 0.5 * u, u keyed like the
        // Gaussian noise (seed 4, kStreamNoise, key 9, t*N + i); none in evaluation.
        const int T = 3, N = 4, K = 1;
        RouterConfig rc;
        rc.k = K;
        rc.normalize = Normalize::no;
        rc.noise = 0.5;
        rc.noise_kind = NoiseKind::uniform;
        auto r = router_create(rc);
        // zero logits, as a zero-initialised router makes: the draws alone pick the expert
        const std::vector<float> l(size_t(T) * N, 0.0f);
        RouteContext ctx;
        ctx.seed = 4;
        ctx.noise_step = 9;
        const Routed eval = route(*r, l, T, N, K, ctx);
        CHECK(eval.noisy == l);
        CHECK(eval.sel == std::vector<int>{0, 0, 0});  // ties: the lower index
        ctx.training = true;
        const Routed a = route(*r, l, T, N, K, ctx);
        CHECK(a.st.noise_std == 0.0f);  // no Gaussian std for the shazeer loss to read
        const Rng rng{4, kStreamNoise, 9};
        for (int t = 0; t < T; ++t) {
            int best = 0;
            double z = 0.0;
            for (int i = 0; i < N; ++i) {
                const double u = rng.uniform(uint64_t(t * N + i));
                CHECK(u >= 0.0);
                CHECK(u < 1.0);
                CHECK(a.noisy[size_t(t * N + i)] == doctest::Approx(0.5 * u).epsilon(1e-6));
                if (u > rng.uniform(uint64_t(t * N + best))) best = i;
                z += std::exp(0.5 * u);
            }
            // the argmax of the draws, gate = softmax of the noisy logits there (k = 1, raw)
            CHECK(a.sel[size_t(t)] == best);
            CHECK(a.gate[size_t(t)] ==
                  doctest::Approx(std::exp(0.5 * rng.uniform(uint64_t(t * N + best))) / z));
        }
        const Routed b = route(*r, l, T, N, K, ctx);
        CHECK(b.noisy == a.noisy);  // same key: the same draws
        ctx.noise_step = 10;
        CHECK(route(*r, l, T, N, K, ctx).noisy != a.noisy);  // resampled every step
    }

    TEST_CASE("topk: gradient check with uniform gating noise") {
        const int T = 5, N = 6, K = 2;
        RouterConfig rc;
        rc.k = K;
        rc.noise = 0.8;
        rc.noise_kind = NoiseKind::uniform;
        auto r = router_create(rc);
        std::vector<float> l = normal_vector(size_t(T) * N, 7, 2.0f);
        const std::vector<float> c = normal_vector(size_t(T) * K, 8);
        const std::vector<float> d = normal_vector(size_t(T) * N, 9);
        RouteContext ctx;
        ctx.training = true;
        ctx.seed = 2;
        Routed p(*r, T, N, K);
        p.run(l.data(), ctx);
        std::vector<float> dl(size_t(T) * N);
        r->backward(p.st, c.data(), d.data(), dl.data());
        auto f = [&] {
            p.run(l.data(), ctx);
            return weighted_sum(c.data(), p.gate.data(), c.size()) +
                   weighted_sum(d.data(), p.probs.data(), d.size());
        };
        auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
        expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig), "uniform", 1e-3);
    }

    TEST_CASE("topk: clean gates read softmax of the clean logits at the expert the noise chose") {
        // router.topk.gate_logits: clean (Chen et al. 2022): selection by l + 2 u, u ~ U[0, 1)
        // keyed (seed 3, kStreamNoise, key 5, t*N + i); gate = softmax(l) at the chosen expert;
        // p stays the softmax of the noisy logits.
        const int T = 16, N = 4, K = 1;
        RouterConfig rc;
        rc.k = K;
        rc.normalize = Normalize::no;
        rc.noise = 2.0;
        rc.noise_kind = NoiseKind::uniform;
        rc.topk.gate_logits = GateLogits::clean;
        auto r = router_create(rc);
        std::vector<float> l(size_t(T) * N);
        for (int t = 0; t < T; ++t)
            for (int i = 0; i < N; ++i)
                l[size_t(t * N + i)] = 0.3f * float(i) - 0.1f * float(t % 3);
        RouteContext ctx;
        ctx.seed = 3;
        ctx.noise_step = 5;
        ctx.training = true;
        const Routed a = route(*r, l, T, N, K, ctx);
        CHECK(a.st.clean_gates);
        const Rng rng{3, kStreamNoise, 5};
        int moved = 0;  // tokens whose noisy choice is not the clean argmax (expert 3)
        for (int t = 0; t < T; ++t) {
            double zc = 0.0, zn = 0.0, best_v = -1e30;
            int best = 0;
            for (int i = 0; i < N; ++i) {
                const double li = l[size_t(t * N + i)];
                const double v = li + 2.0 * rng.uniform(uint64_t(t * N + i));
                if (v > best_v) {
                    best_v = v;
                    best = i;
                }
                zc += std::exp(li);
                zn += std::exp(v);
            }
            CHECK(a.sel[size_t(t)] == best);
            moved += best != N - 1;
            CHECK(a.gate[size_t(t)] == doctest::Approx(std::exp(l[size_t(t * N + best)]) / zc));
            CHECK(a.probs[size_t(t * N + best)] == doctest::Approx(std::exp(best_v) / zn));
        }
        CHECK(moved >= 4);  // the noise, not the clean logits, chose for a good part of them
        // evaluation: no noise, the gate is softmax(l) at argmax l, as with noisy gates
        ctx.training = false;
        const Routed e = route(*r, l, T, N, K, ctx);
        CHECK_FALSE(e.st.clean_gates);
        rc.topk.gate_logits = GateLogits::noisy;
        const Routed en = route(*router_create(rc), l, T, N, K, ctx);
        CHECK(e.sel == en.sel);
        CHECK(e.gate == en.gate);
        // training with noisy gates: the same selection, different gates
        ctx.training = true;
        const Routed n = route(*router_create(rc), l, T, N, K, ctx);
        CHECK(n.sel == a.sel);
        CHECK(n.probs == a.probs);
        CHECK(n.gate != a.gate);
    }

    TEST_CASE("topk: gradient check with clean gates") {
        // The gates read the clean logits, the aux losses p of the noisy ones: both gradients
        // reach the logits. Every score function, both normalisations, k = 1 and 2, uniform and
        // Gaussian noise.
        const int T = 5, N = 6;
        for (ScoreFn score : {ScoreFn::softmax, ScoreFn::sigmoid})
            for (bool normalize : {false, true})
                for (int K : {1, 2})
                    for (NoiseKind kind : {NoiseKind::uniform, NoiseKind::gaussian}) {
                        CAPTURE(int(score));
                        CAPTURE(normalize);
                        CAPTURE(K);
                        CAPTURE(int(kind));
                        RouterConfig rc;
                        rc.k = K;
                        rc.score = score;
                        rc.normalize = normalize ? Normalize::yes : Normalize::no;
                        rc.scale = 1.5;
                        rc.noise = 0.8;
                        rc.noise_kind = kind;
                        rc.topk.gate_logits = GateLogits::clean;
                        auto r = router_create(rc);
                        std::vector<float> l = normal_vector(size_t(T) * N, 17, 2.0f);
                        const std::vector<float> c = normal_vector(size_t(T) * K, 18);
                        const std::vector<float> d = normal_vector(size_t(T) * N, 19);
                        RouteContext ctx;
                        ctx.training = true;
                        ctx.seed = 6;
                        Routed p(*r, T, N, K);
                        p.run(l.data(), ctx);
                        REQUIRE(p.st.clean_gates);
                        std::vector<float> dl(size_t(T) * N);
                        r->backward(p.st, c.data(), d.data(), dl.data());
                        auto f = [&] {
                            p.run(l.data(), ctx);
                            return weighted_sum(c.data(), p.gate.data(), c.size()) +
                                   weighted_sum(d.data(), p.probs.data(), d.size());
                        };
                        auto sig = [&] { return Signature(p.sel.begin(), p.sel.end()); };
                        expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig),
                                        "clean gates", 1e-3);
                        // the gates alone: the gradient is that of softmax / sigmoid of the
                        // clean logits, not of the noisy ones (d_probs null)
                        r->backward(p.st, c.data(), nullptr, dl.data());
                        auto g = [&] {
                            p.run(l.data(), ctx);
                            return weighted_sum(c.data(), p.gate.data(), c.size());
                        };
                        expect_gradient(check_gradient(g, l.data(), dl.data(), l.size(), {}, sig),
                                        "clean gates alone", 1e-3);
                    }
    }
}  // TEST_SUITE
