// LayerWindow, FlipTracker and CollapseTracker on tiny hand-built routing plans, each expected
// value worked out by hand in the comments (formulas in src/stats/routing_stats.h).
#include "stats/routing_stats.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "support/plan_builder.h"

using moe::LayerStats;
using moe::LayerWindow;
using moe::RoutingPlan;
using moe::test::make_plan;

namespace {

// Batch 1: T = 4, N = 3, K = 2, capacity C = 2, drop by position (earlier tokens first).
//   token  sel     kept   (e0 keeps t0, t1; e1 keeps t0, t2; e2 keeps t1)
//   t0     {0, 1}  {1, 1}
//   t1     {0, 2}  {1, 1}
//   t2     {0, 1}  {0, 1}
//   t3     {1, 0}  {0, 0}   <- every assignment dropped
// routed A = {4, 3, 1} (sum 8 = T K), dropped D = {2, 1, 0}, processed P = {2, 2, 1}.
RoutingPlan batch1_plan() {
    return make_plan(4, 3, 2, {0, 1, 0, 2, 0, 1, 1, 0}, {1, 1, 1, 1, 0, 1, 0, 0});
}
// Router probabilities p (T, N); consistent with the selections (ties: lowest index first).
const std::vector<float> kProbs1 = {0.5f, 0.25f, 0.25f, 0.5f,  0.125f, 0.375f,
                                    0.5f, 0.25f, 0.25f, 0.25f, 0.75f,  0.0f};
// Logits (T, N), an independent input of logit_lse2: rows of equal logits c give lse = c + ln 3.
const std::vector<float> kLogits1 = {0, 0, 0, 1, 1, 1, 0, 0, 0, 2, 2, 2};
const std::vector<int> kGroups1 = {0, 0, 1, 1};

// Batch 2: T = 2, N = 3, K = 2, no capacity limit: nothing dropped.
//   t0 {2, 1}, t1 {2, 0}: A = {1, 1, 2}, D = {0, 0, 0}.
RoutingPlan batch2_plan() {
    return make_plan(2, 3, 2, {2, 1, 2, 0}, {1, 1, 1, 1});
}
const std::vector<float> kProbs2 = {0.0f, 0.25f, 0.75f, 0.25f, 0.0f, 0.75f};

}  // namespace

TEST_SUITE("stats") {
    TEST_CASE("make_plan builds a consistent CSR") {
        const RoutingPlan p = batch1_plan();
        CHECK(p.routed == std::vector<int>{4, 3, 1});
        CHECK(p.dropped == std::vector<int>{2, 1, 0});
        CHECK(p.offsets == std::vector<int>{0, 2, 4, 5});
        CHECK(std::vector<int>(p.slot.begin(), p.slot.begin() + p.A) ==
              std::vector<int>{0, 2, 1, 5, 3});
        CHECK(p.token_assignments(3) == 0);  // t3: every assignment dropped
    }

    TEST_CASE("LayerWindow: one batch with drops, by hand") {
        const RoutingPlan plan = batch1_plan();
        LayerWindow w(3, 2);
        w.observe(plan, kProbs1.data(), kLogits1.data(), kGroups1.data(), 2, 1.2, 0.3);
        const LayerStats s = w.finish();

        CHECK(s.num_tokens == 4);
        CHECK(s.num_batches == 1);

        // Per expert: tokens A, dropped D, processed P, load A/8, importance = column means of p:
        //   e0 (.5 + .5 + .5 + .25)/4 = 0.4375; e1 (.25 + .125 + .25 + .75)/4 = 0.34375;
        //   e2 (.25 + .375 + .25 + 0)/4 = 0.21875.
        REQUIRE(s.experts.size() == 3);
        CHECK(s.experts[0].tokens == 4);
        CHECK(s.experts[1].tokens == 3);
        CHECK(s.experts[2].tokens == 1);
        CHECK(s.experts[0].dropped == 2);
        CHECK(s.experts[1].dropped == 1);
        CHECK(s.experts[2].dropped == 0);
        CHECK(s.experts[0].processed == 2);
        CHECK(s.experts[1].processed == 2);
        CHECK(s.experts[2].processed == 1);
        CHECK(s.experts[0].load == 0.5);
        CHECK(s.experts[1].load == 0.375);
        CHECK(s.experts[2].load == 0.125);
        CHECK(s.experts[0].importance == doctest::Approx(0.4375));
        CHECK(s.experts[1].importance == doctest::Approx(0.34375));
        CHECK(s.experts[2].importance == doctest::Approx(0.21875));

        // Load statistics on A = {4, 3, 1}, S = 8, load {.5, .375, .125}:
        //   max_vio = 3*4/8 - 1 = 0.5; cv = sqrt(14)/8 (var (16+1+25)/27 = 14/9, mean 8/3)
        //   H = -(.5 ln .5 + .375 ln .375 + .125 ln .125) = 0.346574 + 0.367811 + 0.259930
        //     = 0.974315; load_entropy = H / ln 3 = 0.886860; effective = e^H = 2.649351
        //   gini = (|.5-.375| + |.5-.125| + |.375-.125|) * 2 / (2*3) = 1.5/6 = 0.25
        CHECK(s.max_vio == doctest::Approx(0.5));
        CHECK(s.load_cv == doctest::Approx(std::sqrt(14.0) / 8.0));
        CHECK(s.load_entropy == doctest::Approx(0.8868595));
        CHECK(s.effective_experts == doctest::Approx(2.6493511));
        CHECK(s.gini == doctest::Approx(0.25));
        CHECK(s.dead_experts == 0);
        CHECK(s.min_load == 0.125);
        CHECK(s.max_load == 0.5);

        // drop_rate = sum D / (T K) = 3/8; dropped tokens: only t3 -> 1/4.
        CHECK(s.drop_rate == 0.375);
        CHECK(s.dropped_token_rate == 0.25);

        // router_entropy: per token -sum p ln p:
        //   t0, t2: -(.5 ln .5 + 2 * .25 ln .25) = 1.5 ln 2 = 1.039721
        //   t1:     -(.5 ln .5 + .125 ln .125 + .375 ln .375) = 0.974315
        //   t3:     -(.25 ln .25 + .75 ln .75) (0 ln 0 = 0) = 0.562335
        //   mean 3.616092 / 4 = 0.904023, / ln 3 = 0.822877
        // top1_prob = (.5 + .5 + .5 + .75)/4 = 0.5625
        CHECK(s.router_entropy == doctest::Approx(0.8228771));
        CHECK(s.top1_prob == doctest::Approx(0.5625));

        // logit_lse2 with L = ln 3: (L^2 + (1+L)^2 + L^2 + (2+L)^2) / 4
        //   = (1.206949 + 4.404174 + 1.206949 + 9.601398) / 4 = 4.104867
        CHECK(s.logit_lse2 == doctest::Approx(4.1048674));
        CHECK(s.aux_loss == doctest::Approx(1.2));
        CHECK(s.z_loss == doctest::Approx(0.3));

        // Specialisation: top-1 expert = argmax p: t0 -> 0, t1 -> 0, t2 -> 0, t3 -> 1.
        //          e0 e1 e2 | n_g
        //   g0      2  0  0 |  2
        //   g1      1  1  0 |  2
        //   n_i     3  1  0 |  n = 4
        //   H(group) = ln 2 = 0.693147, H(expert) = -(.75 ln .75 + .25 ln .25) = 0.562335
        //   I = 2/4 ln(4*2/(2*3)) + 1/4 ln(4*1/(2*3)) + 1/4 ln(4*1/(2*1))
        //     = .5 ln(4/3) + .25 ln(2/3) + .25 ln 2 = 0.143841 - 0.101366 + 0.173287 = 0.215762
        //   NMI = 2 * 0.215762 / (0.693147 + 0.562335) = 0.343711
        //   purity = (2 + 1 + 0) / 4 = 0.75
        CHECK(s.num_groups == 2);
        CHECK(s.group_expert == std::vector<int64_t>{2, 0, 0, 1, 1, 0});
        CHECK(s.spec_nmi == doctest::Approx(0.3437110));
        CHECK(s.spec_purity == 0.75);
        // dispatch_entropy: e0 holds 3 of 4 tokens, groups (2, 1): 3/4 (2/3 ln 3/2 + 1/3 ln 3)
        //   = 3/4 * 0.636514 = 0.477386; e1 one group: 0.
        CHECK(s.dispatch_entropy == doctest::Approx(0.4773856));

        // Filled elsewhere: flip_rate (FlipTracker) and the router gradients (trainer).
        CHECK(std::isnan(s.flip_rate));
        CHECK(std::isnan(s.router_grad_task));
        CHECK(std::isnan(s.router_grad_aux));
        CHECK(std::isnan(s.router_grad_cos));
    }

    TEST_CASE("LayerWindow: no tokens dropped") {
        LayerWindow w(3);
        w.observe(batch2_plan(), kProbs2.data(), nullptr, nullptr, 0, 0.0, 0.0);
        const LayerStats s = w.finish();
        CHECK(s.drop_rate == 0.0);
        CHECK(s.dropped_token_rate == 0.0);
        CHECK(s.experts[2].processed == 2);
        // no logits, no groups: those columns are undefined
        CHECK(std::isnan(s.logit_lse2));
        CHECK(std::isnan(s.spec_nmi));
        CHECK(std::isnan(s.dispatch_entropy));
        CHECK(std::isnan(s.spec_purity));
        CHECK(s.num_groups == 0);
        CHECK(s.group_expert.empty());
    }

    TEST_CASE("LayerWindow: a window sums counts exactly, not per-batch ratios") {
        LayerWindow w(3, 2);
        w.observe(batch1_plan(), kProbs1.data(), kLogits1.data(), kGroups1.data(), 2, 1.2, 0.3);
        w.observe(batch2_plan(), kProbs2.data(), nullptr, nullptr, 0, 0.8, 0.1);
        const LayerStats s = w.finish();
        // A = {4,3,1} + {1,1,2} = {5,4,3}; D = {2,1,0}; tokens 6; slots 8 + 4 = 12.
        CHECK(s.num_tokens == 6);
        CHECK(s.num_batches == 2);
        CHECK(s.experts[0].tokens == 5);
        CHECK(s.experts[1].tokens == 4);
        CHECK(s.experts[2].tokens == 3);
        CHECK(s.experts[0].load == doctest::Approx(5.0 / 12.0));
        // drop_rate = 3/12 = 0.25 (the mean of the per-batch rates would be (3/8 + 0)/2 = 0.1875)
        CHECK(s.drop_rate == 0.25);
        CHECK(s.dropped_token_rate == doctest::Approx(1.0 / 6.0));
        // max_vio = 5 / 4 - 1 = 0.25
        CHECK(s.max_vio == doctest::Approx(0.25));
        // importance over the 6 tokens: column sums of p are {1.75, 1.375, .875} in batch 1 and
        // {.25, .25, 1.5} in batch 2: e0 2/6, e1 1.625/6, e2 2.375/6.
        CHECK(s.experts[0].importance == doctest::Approx(2.0 / 6.0));
        CHECK(s.experts[1].importance == doctest::Approx(1.625 / 6.0));
        CHECK(s.experts[2].importance == doctest::Approx(2.375 / 6.0));
        // top1_prob = (2.25 + .75 + .75) / 6 = 0.625
        CHECK(s.top1_prob == doctest::Approx(0.625));
        // losses: mean over the two batches
        CHECK(s.aux_loss == doctest::Approx(1.0));
        CHECK(s.z_loss == doctest::Approx(0.2));
        // logits only in batch 1: its 4 tokens
        CHECK(s.logit_lse2 == doctest::Approx(4.1048674));
        // groups only in batch 1
        CHECK(s.spec_purity == 0.75);
    }

    TEST_CASE("LayerWindow: every assignment dropped") {
        // T = 2, N = 2, K = 1; both tokens chose e0 and both assignments were dropped (the plan of
        // an expert-choice router where no expert chose any token looks the same to the stats).
        const RoutingPlan plan = make_plan(2, 2, 1, {0, 0}, {0, 0});
        const std::vector<float> probs = {0.75f, 0.25f, 1.0f, 0.0f};
        LayerWindow w(2);
        w.observe(plan, probs.data(), nullptr, nullptr, 0, 0.0, 0.0);
        const LayerStats s = w.finish();
        CHECK(s.drop_rate == 1.0);
        CHECK(s.dropped_token_rate == 1.0);
        CHECK(s.experts[0].tokens == 2);
        CHECK(s.experts[0].dropped == 2);
        CHECK(s.experts[0].processed == 0);
        // routed load is still defined: one expert takes all, the other is dead
        CHECK(s.max_vio == doctest::Approx(1.0));
        CHECK(s.dead_experts == 1);
        CHECK(s.load_entropy == 0.0);
    }

    TEST_CASE("LayerWindow: N = 1") {
        // One expert, K = 1: p = 1 for every token. Entropy of p normalised by ln 1: 1 by
        // convention; top1_prob 1; load stats of A = {3}: max_vio 0, load_entropy 1.
        const RoutingPlan plan = make_plan(3, 1, 1, {0, 0, 0}, {1, 1, 1});
        const std::vector<float> probs = {1.0f, 1.0f, 1.0f};
        const std::vector<float> logits = {0.5f, -1.0f, 2.0f};  // lse = the logit itself
        LayerWindow w(1);
        w.observe(plan, probs.data(), logits.data(), nullptr, 0, 1.0, 0.0);
        const LayerStats s = w.finish();
        CHECK(s.router_entropy == 1.0);
        CHECK(s.top1_prob == 1.0);
        CHECK(s.max_vio == 0.0);
        CHECK(s.load_entropy == 1.0);
        CHECK(s.effective_experts == 1.0);
        CHECK(s.experts[0].importance == 1.0);
        // (0.25 + 1 + 4) / 3 = 1.75
        CHECK(s.logit_lse2 == doctest::Approx(1.75));
    }

    TEST_CASE("LayerWindow: logsumexp is stable for large logits") {
        // logits {1000, 1000}: lse = 1000 + ln 2; lse^2 = 1e6 + 2000 ln 2 + (ln 2)^2 = 1001386.7748
        const RoutingPlan plan = make_plan(1, 2, 1, {0}, {1});
        const std::vector<float> logits = {1000.0f, 1000.0f};
        LayerWindow w(2);
        w.observe(plan, nullptr, logits.data(), nullptr, 0, 0.0, 0.0);
        const LayerStats s = w.finish();
        CHECK(s.logit_lse2 == doctest::Approx(1001386.7748141));
        CHECK(std::isfinite(s.logit_lse2));
        CHECK(std::isnan(s.router_entropy));  // no probabilities passed
        CHECK(std::isnan(s.experts[0].importance));
    }

    TEST_CASE("LayerWindow: reset starts an empty window, and an empty window is undefined") {
        LayerWindow w(3, 2);
        w.observe(batch1_plan(), kProbs1.data(), kLogits1.data(), kGroups1.data(), 2, 1.2, 0.3);
        w.reset();
        CHECK(w.tokens() == 0);
        LayerStats s = w.finish();
        CHECK(s.num_tokens == 0);
        CHECK(std::isnan(s.max_vio));
        CHECK(std::isnan(s.drop_rate));
        CHECK(std::isnan(s.dropped_token_rate));
        CHECK(std::isnan(s.router_entropy));
        CHECK(std::isnan(s.aux_loss));
        CHECK(std::isnan(s.spec_nmi));
        CHECK(std::isnan(s.experts[1].load));
        CHECK(s.dead_experts == 3);
        // and after the reset the window counts as if new
        w.observe(batch2_plan(), kProbs2.data(), nullptr, nullptr, 0, 0.8, 0.1);
        s = w.finish();
        CHECK(s.experts[2].tokens == 2);
        CHECK(s.drop_rate == 0.0);
        CHECK(s.aux_loss == doctest::Approx(0.8));
    }

    TEST_CASE("LayerWindow: negative groups are skipped") {
        LayerWindow w(3, 2);
        const std::vector<int> groups = {0, -1, -1, 1};
        w.observe(batch1_plan(), kProbs1.data(), nullptr, groups.data(), 2, 0.0, 0.0);
        const LayerStats s = w.finish();
        // t0 -> (g0, e0), t3 -> (g1, e1): one-to-one, NMI 1, purity 1
        CHECK(s.group_expert == std::vector<int64_t>{1, 0, 0, 0, 1, 0});
        CHECK(s.spec_nmi == doctest::Approx(1.0));
        CHECK(s.spec_purity == 1.0);
    }

    TEST_CASE("layer_stat_values follows kLayerStatColumns") {
        LayerStats s;
        s.max_vio = 1;
        s.dead_experts = 6;
        s.drop_rate = 9;
        s.router_grad_cos = 21;
        const auto v = moe::layer_stat_values(s);
        const auto& c = moe::kLayerStatColumns;
        auto at = [&](std::string_view name) {
            return v[size_t(std::find(c.begin(), c.end(), name) - c.begin())];
        };
        CHECK(at("max_vio") == 1.0);
        CHECK(at("dead_experts") == 6.0);
        CHECK(at("drop_rate") == 9.0);
        CHECK(at("router_grad_cos") == 21.0);
        CHECK(std::isnan(at("spec_nmi")));
        CHECK(std::set<std::string_view>(c.begin(), c.end()).size() == c.size());
    }

    TEST_CASE("FlipTracker") {
        moe::FlipTracker f;
        const std::vector<int> e1 = {0, 1, 2, 1}, e2 = {0, 2, 2, 0}, e3 = {0, 2};
        CHECK(std::isnan(f.update(e1)));  // first eval: nothing to compare with
        CHECK(f.update(e2) == 0.5);       // tokens 1 and 3 changed: 2/4
        CHECK(f.update(e2) == 0.0);
        CHECK(std::isnan(f.update(e3)));  // the probe set changed size
        CHECK(f.update(std::vector<int>{1, 2}) == 0.5);
        CHECK(moe::top1_expert(kProbs1.data(), 3, 3) == 1);
        CHECK(moe::top1_expert(kProbs1.data(), 3, 1) == 0);
        const std::vector<float> tie = {0.4f, 0.4f, 0.2f};
        CHECK(moe::top1_expert(tie.data(), 3, 0) == 0);  // ties: the lower index
    }

    TEST_CASE("LayerWindow: the top-1 expert is argmax p and not the biased selection") {
        // T = 2, N = 3, K = 1: the balancing bias made both tokens select e2, but argmax p is e0
        // for t0 and e1 for t1: the group table follows p (METRICS.md).
        const RoutingPlan plan = make_plan(2, 3, 1, {2, 2}, {1, 1});
        const std::vector<float> probs = {0.6f, 0.1f, 0.3f, 0.2f, 0.5f, 0.3f};
        const std::vector<int> groups = {0, 1};
        LayerWindow w(3, 2);
        w.observe(plan, probs.data(), nullptr, groups.data(), 2, 0.0, 0.0);
        const LayerStats s = w.finish();
        CHECK(s.group_expert == std::vector<int64_t>{1, 0, 0, 0, 1, 0});
        CHECK(s.experts[2].tokens == 2);  // the load counts what was routed
        CHECK(s.spec_purity == 1.0);
    }

    TEST_CASE("router_grad_stats: norms and cosine by hand") {
        LayerStats st;
        const std::vector<float> task = {3, 4, 0}, aux = {0, 4, 3};
        moe::router_grad_stats(task, aux, st);
        CHECK(st.router_grad_task == doctest::Approx(5.0));
        CHECK(st.router_grad_aux == doctest::Approx(5.0));
        CHECK(st.router_grad_cos == doctest::Approx(16.0 / 25.0));
        const std::vector<float> zero(3, 0.0f);
        moe::router_grad_stats(task, zero, st);
        CHECK(std::isnan(st.router_grad_cos));
    }

    TEST_CASE("CollapseTracker: dead and revived transitions") {
        // N = 4: threshold 1/(10*4) = 0.025.
        moe::CollapseTracker c(2, 4);
        std::vector<moe::CollapseEvent> ev;
        // step 100: experts 2 (0.02) and 3 (0.0) are below -> dead
        c.observe(100, 0, std::vector<double>{0.5, 0.48, 0.02, 0.0}, ev);
        REQUIRE(ev.size() == 2);
        CHECK(ev[0].step == 100);
        CHECK(ev[0].layer == 0);
        CHECK(ev[0].expert == 2);
        CHECK(ev[0].kind == moe::CollapseKind::dead);
        CHECK(ev[1].expert == 3);
        CHECK(c.is_dead(0, 2));
        CHECK(c.dead_count(0) == 2);
        CHECK(c.first_dead_step() == 100);
        // layer 1 balanced at step 200: nothing
        c.observe(200, 1, std::vector<double>{0.25, 0.25, 0.25, 0.25}, ev);
        CHECK(ev.size() == 2);
        CHECK_FALSE(c.first_dead_step(1).has_value());
        // step 200: expert 2 back at exactly the threshold and expert 3 above it -> revived
        c.observe(200, 0, std::vector<double>{0.4, 0.3, 0.025, 0.275}, ev);
        REQUIRE(ev.size() == 4);
        CHECK(ev[2].expert == 2);
        CHECK(ev[2].kind == moe::CollapseKind::revived);
        CHECK(ev[3].expert == 3);
        CHECK(moe::collapse_kind_name(ev[3].kind) == "revived");
        CHECK(c.dead_count(0) == 0);
        // an interval without tokens changes nothing
        c.observe(250, 0, std::vector<double>(4, std::nan("")), ev);
        CHECK(ev.size() == 4);
        // step 300: three collapse; first_dead_step stays 100
        c.observe(300, 0, std::vector<double>{0.97, 0.01, 0.01, 0.01}, ev);
        CHECK(ev.size() == 7);
        CHECK(c.dead_count(0) == 3);
        CHECK(c.first_dead_step() == 100);
        CHECK(c.first_dead_step(0) == 100);
        CHECK(moe::collapse_kind_name(moe::CollapseKind::dead) == "dead");
    }

}  // TEST_SUITE
