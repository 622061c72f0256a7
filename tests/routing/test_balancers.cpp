// Balancers (routing/balancer.h, METRICS.md "Auxiliary losses"): values on hand-computed
// examples, and gradient checks of each loss against its own inputs. (The same losses are
// gradient-checked end to end through the MoE layer in tests/model/test_moe_layer.cpp.)
#include "routing/balancer.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "routing/capacity.h"
#include "routing/router.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

// T tokens with K = 1, token t routed to sel[t] (gate = its probability unless set), the
// probabilities given: the plan and the router state an auxiliary loss reads.
struct Case {
    RoutingPlan plan;
    RouterState st;
};
Case plan_of(int T, int N, const std::vector<int>& sel, const std::vector<float>& probs) {
    Case c;
    c.st.T = T;
    c.st.N = N;
    c.st.K = 1;
    c.st.probs = probs;
    c.st.noisy = probs;
    c.st.sel = sel;
    c.st.sel_gate.resize(size_t(T));
    for (int t = 0; t < T; ++t) c.st.sel_gate[size_t(t)] = probs[size_t(t * N + sel[size_t(t)])];
    c.plan.reserve(T, N, size_t(T));
    plan_from_slots(c.plan, T, T, c.st.sel.data(), c.st.sel_gate.data(), nullptr, 1);
    return c;
}

// T tokens with K slots each, token t's choices sel[t*K..] best first (gate = the probability),
// the noisy logits = logits + noise_offset (a fixed "noise" of std noise_std): what every loss
// reads, shazeer's smooth load included.
Case slots_of(int T, int N, int K, const std::vector<int>& sel, const std::vector<float>& probs) {
    Case c;
    c.st.T = T;
    c.st.N = N;
    c.st.K = K;
    c.st.R = T * K;
    c.st.probs = probs;
    c.st.noisy = probs;
    c.st.sel = sel;
    c.st.sel_gate.resize(size_t(T) * K);
    for (int s = 0; s < T * K; ++s)
        c.st.sel_gate[size_t(s)] = probs[size_t((s / K) * N + sel[size_t(s)])];
    c.plan.reserve(T, N, size_t(T) * K);
    plan_from_slots(c.plan, T, T * K, c.st.sel.data(), c.st.sel_gate.data(), nullptr, K);
    return c;
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("bias_update: b += rate * sign(mean A - A)") {
        // counts {5, 1, 3, 3}: mean 3, mean - A = {-2, 2, 0, 0}, signs {-1, 1, 0, 0}
        float bias[4] = {0.5f, 0.0f, -0.25f, 0.0f};
        const int counts[4] = {5, 1, 3, 3};
        bias_update(bias, counts, 4, 0.1f);
        CHECK(bias[0] == doctest::Approx(0.4));
        CHECK(bias[1] == doctest::Approx(0.1));
        CHECK(bias[2] == -0.25f);  // exactly unchanged: sign(0) = 0
        CHECK(bias[3] == 0.0f);
        // a non-integer mean: counts {1, 2} (mean 1.5) -> {+rate, -rate}
        float b2[2] = {0, 0};
        const int c2[2] = {1, 2};
        bias_update(b2, c2, 2, 0.01f);
        CHECK(b2[0] == doctest::Approx(0.01));
        CHECK(b2[1] == doctest::Approx(-0.01));
    }

    TEST_CASE("switch loss: equals 1 at perfect balance, hand-computed otherwise") {
        // T = 4, N = 4, K = 1, each expert gets one token, p uniform: f = P = 1/4, N * sum f P = 1
        const Case even = plan_of(4, 4, {0, 1, 2, 3}, std::vector<float>(16, 0.25f));
        CHECK(switch_loss(even.plan, even.st.probs.data(), 1, 1.0f, nullptr) ==
              doctest::Approx(1.0));
        // T = 2, N = 2: p = {.8 .2; .6 .4}, both tokens on expert 0: f = {1, 0}, P = {.7, .3},
        // loss = 2 * (1 * .7) = 1.4; d/dp[t,i] = coef * N * f_i / T = coef for i = 0, 0 for i = 1
        const Case skew = plan_of(2, 2, {0, 0}, {0.8f, 0.2f, 0.6f, 0.4f});
        std::vector<float> dp(4, 0.5f);  // accumulates
        CHECK(switch_loss(skew.plan, skew.st.probs.data(), 1, 0.3f, dp.data()) ==
              doctest::Approx(1.4));
        CHECK(dp[0] == doctest::Approx(0.8));
        CHECK(dp[1] == doctest::Approx(0.5));
        CHECK(dp[2] == doctest::Approx(0.8));
        CHECK(dp[3] == doctest::Approx(0.5));
    }

    TEST_CASE(
        "switch loss: counts the routed assignments before capacity and not the processed ones") {
        // T = 4, N = 2, K = 1, every token on expert 0 with p = {.75, .25}. Capacity factor .5 gives
        // C = 1: expert 0 processes 1 of its 4. f = A / (T K) = {1, 0} before capacity, so the loss
        // is 2 * (1 * .75 + 0) = 1.5; post-capacity counts {1, 0} / 4 would give .375.
        Case c =
            plan_of(4, 2, {0, 0, 0, 0}, {0.75f, 0.25f, 0.75f, 0.25f, 0.75f, 0.25f, 0.75f, 0.25f});
        std::vector<int> scratch;
        capacity_apply(c.plan, 0.5, 1, DropPolicy::position, scratch);
        REQUIRE(c.plan.dropped == std::vector<int>{3, 0});
        CHECK(switch_loss(c.plan, c.st.probs.data(), 1, 1.0f, nullptr) == doctest::Approx(1.5));
    }

    TEST_CASE("switch loss: gradient check w.r.t. the probabilities (counts fixed)") {
        const int T = 6, N = 4;
        std::vector<float> probs = normal_vector(size_t(T) * N, 3, 0.3f);
        Case p = plan_of(T, N, {0, 2, 2, 1, 0, 2}, probs);
        std::vector<float> dp(size_t(T) * N, 0.0f);
        switch_loss(p.plan, p.st.probs.data(), 1, 0.7f, dp.data());
        auto f = [&] { return 0.7 * switch_loss(p.plan, p.st.probs.data(), 1, 0.7f, nullptr); };
        expect_gradient(check_gradient(f, p.st.probs.data(), dp.data(), dp.size()),
                        "switch d_probs", 1e-3);
    }

    TEST_CASE("z-loss: hand-computed 2x2 example") {
        // logits {0 0; ln 3 0}: lse = {ln 2, ln 4 = 2 ln 2}; z = (ln^2 2 + 4 ln^2 2) / 2 = 2.5 ln^2 2
        // d/dl = coef * 2 lse softmax / T: row 0 {ln2/2, ln2/2} coef; row 1 {1.5 ln2, .5 ln2} coef
        const float l[4] = {0.0f, 0.0f, std::log(3.0f), 0.0f};
        const double ln2 = std::log(2.0);
        std::vector<float> dl(4, 1.0f);  // accumulates
        const double z = z_loss(l, 2, 2, 0.1f, dl.data());
        CHECK(z == doctest::Approx(2.5 * ln2 * ln2));
        CHECK(dl[0] == doctest::Approx(1.0 + 0.1 * ln2 / 2));
        CHECK(dl[1] == doctest::Approx(1.0 + 0.1 * ln2 / 2));
        CHECK(dl[2] == doctest::Approx(1.0 + 0.1 * 1.5 * ln2));
        CHECK(dl[3] == doctest::Approx(1.0 + 0.1 * 0.5 * ln2));
        CHECK(z_loss(l, 2, 2, 0.1f, nullptr) == z);
    }

    TEST_CASE("z-loss: gradient check, large logits stay finite") {
        const int T = 5, N = 7;
        std::vector<float> l = normal_vector(size_t(T) * N, 4, 3.0f);
        l[3] = 80.0f;  // exp(80) overflows float; the max-shifted sum does not
        std::vector<float> dl(l.size(), 0.0f);
        z_loss(l.data(), T, N, 0.5f, dl.data());
        for (float v : dl) CHECK(std::isfinite(v));
        auto f = [&] { return 0.5 * z_loss(l.data(), T, N, 0.5f, nullptr); };
        expect_gradient(check_gradient(f, l.data(), dl.data(), l.size()), "z d_logits", 1e-3);
    }

    TEST_CASE("shazeer loss: hand-computed without noise (hard load)") {
        // T = 2, N = 2, K = 1, both tokens on expert 0 with gates .8 and .6:
        //   Importance = {1.4, 0}: mean .7, var .49, CV^2 = 1; Load = A = {2, 0}: CV^2 = 1; total 2.
        // d CV^2(I) / d I_i = 2 (I_i - m) / (N m^2) - 2 v / (N m^3) = {(1.4 - .98)/.98, ...}:
        //   i = 0: 2 * .7 / (2 * .49) - 2 * .49 / (2 * .343) = 1/.7 - 1/.7 = 0
        //   (the gate gradient is 0 for expert 0 at this point: CV^2 is scale-invariant)
        Case p = plan_of(2, 2, {0, 0}, {0.8f, 0.2f, 0.6f, 0.4f});
        std::vector<double> scratch;
        std::vector<float> dgate(2, 0.0f);
        const std::vector<float> logits = {1, 0, 1, 0};
        CHECK(shazeer_loss(p.plan, p.st, logits.data(), 1.0f, dgate.data(), nullptr, scratch) ==
              doctest::Approx(2.0));
        CHECK(dgate[0] == doctest::Approx(0.0).epsilon(1e-6));
        CHECK(dgate[1] == doctest::Approx(0.0).epsilon(1e-6));
        // T = 2, N = 2, one token each, gates .9 (expert 0) and .3 (expert 1):
        //   I = {.9, .3}: m = .6, v = .09, CV^2 = .25; Load {1, 1}: 0. Total .25.
        //   dCV^2/dI_0 = 2 * .3 / (2 * .36) - 2 * .09 / (2 * .216) = .8333.. - .41666.. = 5/12
        //   dCV^2/dI_1 = -.8333.. - .41666.. = -5/4
        Case q = plan_of(2, 2, {0, 1}, {0.9f, 0.1f, 0.7f, 0.3f});
        q.st.sel_gate = {0.9f, 0.3f};
        std::fill(dgate.begin(), dgate.end(), 0.0f);
        CHECK(shazeer_loss(q.plan, q.st, logits.data(), 2.0f, dgate.data(), nullptr, scratch) ==
              doctest::Approx(0.25));
        CHECK(dgate[0] == doctest::Approx(2.0 * 5.0 / 12.0));
        CHECK(dgate[1] == doctest::Approx(2.0 * -5.0 / 4.0));
    }

    TEST_CASE("gshard loss: counts only each token's first choice, hand-computed") {
        // T = 3, N = 3, K = 2, choices best first {0, 1}, {0, 2}, {1, 0}:
        //   first choices {0, 0, 1}: f1 = {2/3, 1/3, 0}; all choices A = {3, 2, 1}
        //   p = {.5 .3 .2; .6 .1 .3; .3 .6 .1}: Pbar = {1.4, 1.0, .6} / 3
        //   gshard = 3 * (2/3 * 1.4/3 + 1/3 * 1.0/3 + 0) = 3.8 / 3
        //   switch = 3 * (3/6 * 1.4/3 + 2/6 * 1.0/3 + 1/6 * .6/3) = 3.4 / 3 (f = A / (T K))
        //   d/dp[t,i] = coef * N * f1_i / T = coef * {2/3, 1/3, 0} for every t
        const Case c = slots_of(3, 3, 2, {0, 1, 0, 2, 1, 0},
                                {0.5f, 0.3f, 0.2f, 0.6f, 0.1f, 0.3f, 0.3f, 0.6f, 0.1f});
        std::vector<double> scratch;
        std::vector<float> dp(9, 1.0f);  // accumulates
        CHECK(gshard_loss(c.plan, c.st, c.st.probs.data(), 0.3f, dp.data(), scratch) ==
              doctest::Approx(3.8 / 3.0));
        CHECK(switch_loss(c.plan, c.st.probs.data(), 2, 0.3f, nullptr) ==
              doctest::Approx(3.4 / 3.0));
        for (int t = 0; t < 3; ++t) {
            CHECK(dp[size_t(t * 3 + 0)] == doctest::Approx(1.0 + 0.3 * 2.0 / 3.0));
            CHECK(dp[size_t(t * 3 + 1)] == doctest::Approx(1.0 + 0.3 / 3.0));
            CHECK(dp[size_t(t * 3 + 2)] == 1.0f);  // never a first choice
        }
        // 1 at perfect balance: one first choice per expert, p uniform
        const Case even = slots_of(3, 3, 2, {0, 1, 1, 2, 2, 0}, std::vector<float>(9, 1.0f / 3));
        CHECK(gshard_loss(even.plan, even.st, even.st.probs.data(), 1.0f, nullptr, scratch) ==
              doctest::Approx(1.0));
    }

    TEST_CASE("gshard loss: before capacity, and equal to switch for k = 1") {
        // Capacity drops do not change the first choices: T = 4, N = 2, K = 1, all on expert 0,
        // C = 1 drops three of them; f1 = {1, 0}, Pbar = {.75, .25}: 2 * .75 = 1.5 (as switch).
        Case c = slots_of(4, 2, 1, {0, 0, 0, 0},
                          {0.75f, 0.25f, 0.75f, 0.25f, 0.75f, 0.25f, 0.75f, 0.25f});
        std::vector<int> scratch;
        capacity_apply(c.plan, 0.5, 1, DropPolicy::position, scratch);
        REQUIRE(c.plan.dropped == std::vector<int>{3, 0});
        std::vector<double> ds;
        CHECK(gshard_loss(c.plan, c.st, c.st.probs.data(), 1.0f, nullptr, ds) ==
              doctest::Approx(1.5));
        // k = 1: the first choice is the only one, so gshard = switch (values and gradients)
        const int T = 6, N = 4;
        const std::vector<float> probs = normal_vector(size_t(T) * N, 7, 0.3f);
        const Case k1 = slots_of(T, N, 1, {3, 1, 1, 0, 3, 3}, probs);
        std::vector<float> dg(probs.size(), 0.0f), dsw(probs.size(), 0.0f);
        CHECK(gshard_loss(k1.plan, k1.st, k1.st.probs.data(), 0.4f, dg.data(), ds) ==
              doctest::Approx(switch_loss(k1.plan, k1.st.probs.data(), 1, 0.4f, dsw.data())));
        for (size_t i = 0; i < dg.size(); ++i) CHECK(dg[i] == doctest::Approx(dsw[i]));
    }

    TEST_CASE("gshard loss: gradient check w.r.t. the probabilities (first choices fixed)") {
        const int T = 6, N = 4, K = 2;
        std::vector<float> probs = normal_vector(size_t(T) * N, 5, 0.3f);
        Case p = slots_of(T, N, K, {0, 1, 2, 0, 2, 3, 1, 0, 0, 3, 2, 1}, probs);
        std::vector<double> scratch;
        std::vector<float> dp(size_t(T) * N, 0.0f);
        gshard_loss(p.plan, p.st, p.st.probs.data(), 0.7f, dp.data(), scratch);
        auto f = [&] {
            return 0.7 * gshard_loss(p.plan, p.st, p.st.probs.data(), 0.7f, nullptr, scratch);
        };
        expect_gradient(check_gradient(f, p.st.probs.data(), dp.data(), dp.size()),
                        "gshard d_probs", 1e-3);
    }

    TEST_CASE("balance_losses: several losses give exactly the sum of each alone") {
        // T = 5, N = 4, K = 2 with noisy logits (shazeer's smooth load, all three gradients)
        const int T = 5, N = 4, K = 2;
        const std::vector<float> probs = normal_vector(size_t(T) * N, 11, 0.3f);
        Case c = slots_of(T, N, K, {0, 1, 2, 3, 1, 0, 0, 2, 3, 1}, probs);
        const std::vector<float> logits = normal_vector(size_t(T) * N, 12, 1.0f);
        c.st.noisy = logits;
        for (size_t i = 0; i < logits.size(); ++i) c.st.noisy[i] += 0.3f * float(i % 3) - 0.3f;
        c.st.noise_std = 1.0f;
        struct Grads {
            AuxLossValues v;
            std::vector<float> dp, dslot, dlog;
        };
        auto run = [&](const BalanceConfig& cfg) {
            Grads g{{},
                    std::vector<float>(size_t(T) * N, 0.0f),
                    std::vector<float>(size_t(T) * K, 0.0f),
                    std::vector<float>(size_t(T) * N, 0.0f)};
            std::vector<double> scratch;
            g.v = balance_losses(cfg, c.plan, c.st, logits.data(), K, g.dp.data(), g.dslot.data(),
                                 g.dlog.data(), scratch);
            return g;
        };
        BalanceConfig all;  // balance.loss: switch (alpha .3) + losses gshard .2, shazeer .1
        all.loss = BalanceLoss::switch_loss;
        all.alpha = 0.3;
        all.losses.gshard = 0.2;
        all.losses.shazeer = 0.1;
        BalanceConfig sw, gs, sh;
        sw.loss = BalanceLoss::switch_loss;
        sw.alpha = 0.3;
        gs.loss = BalanceLoss::none;
        gs.losses.gshard = 0.2;
        sh.loss = BalanceLoss::none;
        sh.losses.shazeer = 0.1;
        const Grads a = run(all), s1 = run(sw), s2 = run(gs), s3 = run(sh);
        // the values alone, hand-checked against the single losses
        std::vector<double> scratch;
        CHECK(s1.v.main == switch_loss(c.plan, c.st.probs.data(), K, 0.3f, nullptr));
        CHECK(s2.v.main == 0.0);  // balance.loss none: no main value
        CHECK(s2.v.weighted ==
              0.2 * gshard_loss(c.plan, c.st, c.st.probs.data(), 0.2f, nullptr, scratch));
        CHECK(s3.v.weighted ==
              0.1 * shazeer_loss(c.plan, c.st, logits.data(), 0.1f, nullptr, nullptr, scratch));
        CHECK(s3.v.weighted > 0.0);
        // together: the main value is balance.loss's, the weighted sum that of each alone
        CHECK(a.v.main == s1.v.main);
        CHECK(a.v.weighted == s1.v.weighted + s2.v.weighted + s3.v.weighted);
        // the gradients: each buffer accumulates, in float, the loss terms that act on it
        for (size_t i = 0; i < a.dp.size(); ++i) CHECK(a.dp[i] == s1.dp[i] + s2.dp[i] + s3.dp[i]);
        for (size_t i = 0; i < a.dslot.size(); ++i)
            CHECK(a.dslot[i] == s1.dslot[i] + s2.dslot[i] + s3.dslot[i]);
        for (size_t i = 0; i < a.dlog.size(); ++i)
            CHECK(a.dlog[i] == s1.dlog[i] + s2.dlog[i] + s3.dlog[i]);
        bool any_slot = false, any_log = false;
        for (float v : s3.dslot) any_slot |= v != 0.0f;
        for (float v : s3.dlog) any_log |= v != 0.0f;
        CHECK(any_slot);  // the shazeer terms are not trivially 0
        CHECK(any_log);
    }

    TEST_CASE("bias_update: the proportional and mean_centred rules") {
        // counts {5, 1, 3, 3}: mean 3, (mean - A) / mean = {-2/3, 2/3, 0, 0}
        float b[4] = {0.5f, 0.0f, -0.25f, 0.0f};
        const int counts[4] = {5, 1, 3, 3};
        bias_update(b, counts, 4, 0.3f, BiasRule::proportional);
        CHECK(b[0] == doctest::Approx(0.3));
        CHECK(b[1] == doctest::Approx(0.2));
        CHECK(b[2] == -0.25f);
        CHECK(b[3] == 0.0f);
        // no token routed: nothing to be proportional to, the bias stays
        const int none[4] = {0, 0, 0, 0};
        bias_update(b, none, 4, 0.3f, BiasRule::proportional);
        CHECK(b[0] == doctest::Approx(0.3));
        CHECK(b[1] == doctest::Approx(0.2));
        // mean_centred: sign step {.4, .1, -.25, 0}, mean .0625, subtracted
        float m[4] = {0.5f, 0.0f, -0.25f, 0.0f};
        bias_update(m, counts, 4, 0.1f, BiasRule::mean_centred);
        CHECK(m[0] == doctest::Approx(0.3375));
        CHECK(m[1] == doctest::Approx(0.0375));
        CHECK(m[2] == doctest::Approx(-0.3125));
        CHECK(m[3] == doctest::Approx(-0.0625));
        CHECK(m[0] + m[1] + m[2] + m[3] == doctest::Approx(0.0).epsilon(1e-7));
        // sign (the default rule) as before
        float g[4] = {0.5f, 0.0f, -0.25f, 0.0f};
        bias_update(g, counts, 4, 0.1f, BiasRule::sign);
        CHECK(g[0] == doctest::Approx(0.4));
        CHECK(g[1] == doctest::Approx(0.1));
    }

    TEST_CASE("bias_rate_at: linear warmup, then constant or cosine to 0") {
        BalanceConfig c;
        c.bias_rate = 0.01;
        // no warmup, constant: the rate at every step, step 0 included (a layer never trained)
        for (int64_t s : {0, 1, 7, 1000}) CHECK(bias_rate_at(c, 12, s) == 0.01);
        c.bias_warmup = 4;  // s / 4 up to step 4
        CHECK(bias_rate_at(c, 12, 1) == doctest::Approx(0.0025));
        CHECK(bias_rate_at(c, 12, 2) == doctest::Approx(0.005));
        CHECK(bias_rate_at(c, 12, 4) == doctest::Approx(0.01));
        CHECK(bias_rate_at(c, 12, 9) == 0.01);
        c.bias_decay = BiasDecay::cosine;  // after step 4: 0.5 (1 + cos(pi (s - 4) / 8))
        CHECK(bias_rate_at(c, 12, 3) == doctest::Approx(0.0075));
        CHECK(bias_rate_at(c, 12, 6) == doctest::Approx(0.005 * (1.0 + std::sqrt(0.5))));
        CHECK(bias_rate_at(c, 12, 8) == doctest::Approx(0.005));
        CHECK(bias_rate_at(c, 12, 12) == doctest::Approx(0.0).epsilon(1e-12));
        c.bias_warmup = 0;  // cosine over the whole run: step 6 of 12 is half way
        CHECK(bias_rate_at(c, 12, 6) == doctest::Approx(0.005));
    }

    TEST_CASE("shazeer loss: learned noise, the smooth load by hand") {
        // T = 2, N = 2, K = 1 through the top-k router with learned noise (logits (T, 2N)):
        // Load_i = sum_t Phi((clean[t,i] - noisy[t,j]) / softplus(n[t,i])), j the other expert
        // (the K-th largest noisy logit without i); Importance_i = sum of the gates on i.
        RouterConfig rc;
        rc.k = 1;
        rc.normalize = Normalize::no;
        rc.topk.noise = TopkNoise::learned;
        auto r = router_create(rc);
        const int T = 2, N = 2;
        RouterState st;
        r->reserve(st, T, N, 0.0);
        RoutingPlan plan;
        plan.reserve(T, N, size_t(T));
        const std::vector<float> l = {1.0f, 0.0f, 0.5f, -1.0f, -0.5f, 0.3f, 0.2f, 0.0f};
        Pass pass;
        pass.training = true;
        pass.noise_key = 5;
        r->route(l.data(), T, nullptr, pass, 11, st, plan);
        auto cv2 = [](double a, double b) {
            const double m = (a + b) / 2, v = ((a - m) * (a - m) + (b - m) * (b - m)) / 2;
            return v / (m * m);
        };
        double load[2] = {0, 0}, imp[2] = {0, 0};
        for (int t = 0; t < T; ++t) {
            for (int i = 0; i < N; ++i) {
                const double sd = std::log1p(std::exp(double(l[size_t(t * 4 + 2 + i)])));
                const double u =
                    (double(l[size_t(t * 4 + i)]) - st.noisy[size_t(t * 2 + 1 - i)]) / sd;
                load[i] += 0.5 * std::erfc(-u / std::sqrt(2.0));
            }
            imp[st.sel[size_t(t)]] += st.sel_gate[size_t(t)];
        }
        std::vector<double> scratch;
        CHECK(shazeer_loss(plan, st, l.data(), 1.0f, nullptr, nullptr, scratch) ==
              doctest::Approx(cv2(imp[0], imp[1]) + cv2(load[0], load[1])).epsilon(1e-5));
    }

    TEST_CASE("shazeer loss: gradient check with learned noise, into clean and noise logits") {
        // loss(logits) = shazeer through the top-k router with learned noise, the noise draws
        // fixed: the analytic gradient is the router's backward of the loss's gate gradients
        // plus the loss's direct logit gradients (both halves). Probes that change the selection
        // or the order of the top K+1 noisy logits of a token are skipped.
        const int T = 12, N = 5;
        for (int K : {1, 2}) {
            CAPTURE(K);
            RouterConfig rc;
            rc.k = K;
            rc.topk.noise = TopkNoise::learned;
            auto r = router_create(rc);
            RouterState st;
            r->reserve(st, T, N, 0.0);
            RoutingPlan plan;
            plan.reserve(T, N, size_t(T) * K);
            std::vector<float> l = normal_vector(size_t(T) * 2 * N, 31, 1.0f);
            Pass pass;
            pass.training = true;
            pass.noise_key = 3;
            std::vector<double> scratch;
            auto f = [&] {
                r->route(l.data(), T, nullptr, pass, 7, st, plan);
                return 0.7 * shazeer_loss(plan, st, l.data(), 0.7f, nullptr, nullptr, scratch);
            };
            auto sig = [&] {
                Signature s(st.sel.begin(), st.sel.begin() + T * K);
                for (int t = 0; t < T; ++t) {
                    std::vector<int> o(static_cast<size_t>(N));
                    std::iota(o.begin(), o.end(), 0);
                    const float* z = st.noisy.data() + size_t(t) * N;
                    std::stable_sort(o.begin(), o.end(), [z](int a, int b) { return z[a] > z[b]; });
                    s.insert(s.end(), o.begin(), o.begin() + K + 1);
                }
                return s;
            };
            (void)f();
            std::vector<float> dslot(size_t(T) * K, 0.0f), ddirect(l.size(), 0.0f), dl(l.size());
            shazeer_loss(plan, st, l.data(), 0.7f, dslot.data(), ddirect.data(), scratch);
            r->backward(st, dslot.data(), nullptr, dl.data());
            double direct_noise = 0.0;
            for (size_t j = 0; j < l.size(); ++j) {
                dl[j] += ddirect[j];
                if (int(j % (2 * N)) >= N) direct_noise += std::fabs(ddirect[j]);
            }
            CHECK(direct_noise > 1e-4);  // the load term reaches the noise logits itself
            expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig),
                            "shazeer learned k=" + std::to_string(K), 2e-3);
        }
    }
}  // TEST_SUITE

TEST_SUITE("routing") {
    TEST_CASE("sequence loss: the switch form per sequence, averaged, hand-computed") {
        // T = 4, N = 2, K = 1; sequences {0, 0} and {1, 1} (ids 7, 7, 9, 9).
        //   sequence 7: tokens to experts 0, 0; p = {.8 .2; .6 .4}: f = {1, 0}, Pbar = {.7, .3}
        //     -> 2 * (1 * .7) = 1.4
        //   sequence 9: experts 0, 1; p = {.5 .5; .1 .9}: f = {.5, .5}, Pbar = {.3, .7}
        //     -> 2 * (.5 * .3 + .5 * .7) = 1.0
        //   loss = (1.4 + 1.0) / 2 = 1.2; the batch as one sequence (switch) would give
        //   2 * (.75 * .5 + .25 * .5) = 1.0
        //   d/dp[t,i] = coef * N * f_i^q / (T_q * runs): sequence 7: coef * {.5, 0},
        //   sequence 9: coef * {.25, .25}
        const Case c =
            slots_of(4, 2, 1, {0, 0, 0, 1}, {0.8f, 0.2f, 0.6f, 0.4f, 0.5f, 0.5f, 0.1f, 0.9f});
        const int64_t seq[4] = {7, 7, 9, 9};
        std::vector<double> scratch;
        std::vector<float> dp(8, 0.0f);
        CHECK(sequence_loss(c.plan, c.st, c.st.probs.data(), seq, 0.5f, dp.data(), scratch) ==
              doctest::Approx(1.2));
        CHECK(switch_loss(c.plan, c.st.probs.data(), 1, 0.5f, nullptr) == doctest::Approx(1.0));
        const float want[8] = {0.25f, 0.0f, 0.25f, 0.0f, 0.125f, 0.125f, 0.125f, 0.125f};
        for (int j = 0; j < 8; ++j) CHECK(dp[size_t(j)] == doctest::Approx(want[j]));
        // one sequence: exactly the switch loss, values and gradients
        const int64_t one[4] = {3, 3, 3, 3};
        std::vector<float> d1(8, 0.0f), d2(8, 0.0f);
        CHECK(sequence_loss(c.plan, c.st, c.st.probs.data(), one, 0.5f, d1.data(), scratch) ==
              doctest::Approx(switch_loss(c.plan, c.st.probs.data(), 1, 0.5f, d2.data())));
        for (int j = 0; j < 8; ++j) CHECK(d1[size_t(j)] == doctest::Approx(d2[size_t(j)]));
    }

    TEST_CASE("sequence loss: gradient check w.r.t. the probabilities, k = 2") {
        const int T = 6, N = 4, K = 2;
        std::vector<float> probs = normal_vector(size_t(T) * N, 11, 0.3f);
        Case p = slots_of(T, N, K, {0, 1, 2, 0, 2, 3, 1, 0, 0, 3, 2, 1}, probs);
        const int64_t seq[6] = {0, 0, 0, 1, 1, 2};
        std::vector<double> scratch;
        std::vector<float> dp(size_t(T) * N, 0.0f);
        sequence_loss(p.plan, p.st, p.st.probs.data(), seq, 0.7f, dp.data(), scratch);
        auto f = [&] {
            return 0.7 *
                   sequence_loss(p.plan, p.st, p.st.probs.data(), seq, 0.7f, nullptr, scratch);
        };
        expect_gradient(check_gradient(f, p.st.probs.data(), dp.data(), dp.size()),
                        "sequence d_probs", 1e-3);
    }
}
