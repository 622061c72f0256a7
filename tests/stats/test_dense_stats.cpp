// Statistics of the dense routers (docs/metrics.md): a weighted plan's load is its dispatch
// weight mass, a dense plan drops no token, and nothing divides by zero.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "routing/router.h"
#include "stats/load_stats.h"
#include "stats/routing_stats.h"

using namespace moe;

namespace {

// The plan and state of routing `logits` (T, width) with a dense router.
struct Routed {
    RouterState st;
    RoutingPlan plan;
};
Routed route(RouterType type, int S, const std::vector<float>& logits, int T, int N) {
    RouterConfig rc;
    rc.type = type;
    rc.soft_slots.slots = S;
    auto router = router_create(rc);
    Routed r;
    router->reserve(r.st, T, N, 0.0);
    const size_t A = router->max_assignments(T, N, 0.0);
    r.plan.reserve(T, N, A);
    if (router->plan_kind() == PlanKind::dense) r.plan.reserve_dense(T, A);
    router->route(logits.data(), T, nullptr, Pass{}, 1, r.st, r.plan);
    std::vector<int> scratch;
    if (r.plan.kind == PlanKind::sparse) plan_index_by_token(r.plan, scratch);  // as the layer
    return r;
}

}  // namespace

TEST_SUITE("stats") {
    TEST_CASE("load_stats_weighted: the load formulas on real masses, by hand") {
        // masses (1, 3): load (1/4, 3/4)
        const std::vector<double> m = {1.0, 3.0};
        const LoadStats s = load_stats_weighted(m);
        CHECK(s.max_vio == doctest::Approx(0.5));  // 2 * 3/4 - 1
        CHECK(s.load_cv == doctest::Approx(0.5));  // std 1/4 over mean 1/2
        CHECK(s.gini == doctest::Approx(0.25));    // |1/4 - 3/4| * 2 / (2 * 2 * 1)
        const double h = -(0.25 * std::log(0.25) + 0.75 * std::log(0.75));
        CHECK(s.load_entropy == doctest::Approx(h / std::log(2.0)));
        CHECK(s.effective_experts == doctest::Approx(std::exp(h)));
        CHECK(s.min_load == doctest::Approx(0.25));
        CHECK(s.max_load == doctest::Approx(0.75));
        CHECK(s.dead_experts == 0);
        // dead: load below 1/(10N); 0.01 / 2.01 < 1/30
        CHECK(load_stats_weighted(std::vector<double>{0.01, 1.0, 1.0}).dead_experts == 1);
        // all zero or empty: undefined, every expert dead
        const LoadStats z = load_stats_weighted(std::vector<double>{0.0, 0.0});
        CHECK(std::isnan(z.max_vio));
        CHECK(std::isnan(z.load_cv));
        CHECK(std::isnan(z.gini));
        CHECK(z.dead_experts == 2);
        CHECK(load_stats_weighted(std::vector<double>{2.0}).load_entropy == 1.0);
        CHECK(load_stats_weighted(std::vector<double>{2.0}).max_vio == 0.0);
    }

    TEST_CASE("LayerWindow: soft reports the dispatch weight mass as the load") {
        // T = 2, N = 3: p = (1, 2, 5)/8 and (4, 2, 2)/8, so mass = (5, 4, 7)/8 and the load
        // (5, 4, 7)/16, while every expert was routed both tokens
        const std::vector<float> logits = {0.0f,           std::log(2.0f), std::log(5.0f),
                                           std::log(4.0f), std::log(2.0f), std::log(2.0f)};
        Routed r = route(RouterType::soft, 1, logits, 2, 3);
        LayerWindow w(3);
        w.observe(r.plan, r.st.probs.data(), nullptr, nullptr, 0, 0.0, 0.0);
        const LayerStats s = w.finish();
        const double load[3] = {5.0 / 16, 4.0 / 16, 7.0 / 16};
        for (int i = 0; i < 3; ++i) {
            CHECK(s.experts[size_t(i)].tokens == 2);
            CHECK(s.experts[size_t(i)].processed == 2);
            CHECK(s.experts[size_t(i)].dropped == 0);
            CHECK(s.experts[size_t(i)].load == doctest::Approx(load[i]));
            CHECK(s.experts[size_t(i)].importance == doctest::Approx(load[i]));  // mean p
        }
        CHECK(s.max_vio == doctest::Approx(3.0 * 7.0 / 16 - 1.0));
        CHECK(s.min_load == doctest::Approx(4.0 / 16));
        CHECK(s.drop_rate == 0.0);
        CHECK(s.dropped_token_rate == 0.0);
        CHECK(s.dead_experts == 0);
        CHECK(s.top1_prob == doctest::Approx((5.0 / 8 + 0.5) / 2));

        // the window's sums survive a save and load
        std::stringstream ss;
        BinaryWriter bw(ss);
        w.save(bw);
        LayerWindow back(3);
        BinaryReader br(ss);
        back.load(br);
        CHECK(back.finish().max_vio == doctest::Approx(s.max_vio));
        // and a reset window is empty again: loads undefined, not a division by zero
        w.reset();
        const LayerStats e = w.finish();
        CHECK(std::isnan(e.max_vio));
        CHECK(std::isnan(e.experts[0].load));
    }

    TEST_CASE("LayerWindow: soft_slots is balanced by construction and drops no token") {
        // T = 2, N = 2, S = 2 (tests/routing/test_soft.cpp): p = (4/7, 3/7) for both tokens;
        // each slot's dispatch weights sum to 1, so each expert's mass is S = 2
        const float l2 = std::log(2.0f), l3 = std::log(3.0f);
        const std::vector<float> logits = {0.0f, l3, 0.0f, l2, l3, 0.0f, l2, 0.0f};
        Routed r = route(RouterType::soft_slots, 2, logits, 2, 2);
        LayerWindow w(2);
        w.observe(r.plan, r.st.probs.data(), nullptr, nullptr, 0, 0.0, 0.0);
        w.observe(r.plan, r.st.probs.data(), nullptr, nullptr, 0, 0.0, 0.0);
        const LayerStats s = w.finish();
        CHECK(s.num_tokens == 4);
        CHECK(s.max_vio == doctest::Approx(0.0).epsilon(1e-6));
        CHECK(s.load_entropy == doctest::Approx(1.0));
        CHECK(s.effective_experts == doctest::Approx(2.0));
        CHECK(s.drop_rate == 0.0);
        CHECK(s.dropped_token_rate == 0.0);
        CHECK(s.top1_prob == doctest::Approx(4.0 / 7));
        for (int i = 0; i < 2; ++i) {
            CHECK(s.experts[size_t(i)].tokens == 4);  // S slot rows per batch
            CHECK(s.experts[size_t(i)].load == doctest::Approx(0.5));
        }
        CHECK(s.experts[0].importance == doctest::Approx(4.0 / 7));  // combine mass
        CHECK(s.experts[1].importance == doctest::Approx(3.0 / 7));
    }

    TEST_CASE("CollapseTracker: a weighted interval's loads are its dispatch weight masses") {
        // N = 2: the threshold is 1/20. Routed counts would be equal (both experts see every
        // token); the masses say expert 0 is starved.
        CollapseTracker c(1, 2);
        std::vector<CollapseEvent> ev;
        const std::vector<int> routed = {64, 64};
        c.count(0, routed);
        c.count_weighted(0, std::vector<double>{1.0, 30.0});
        c.count_weighted(0, std::vector<double>{0.5, 32.5});  // 1.5 of 64: 0.023 < 0.05
        c.end_interval(100, 0, ev);
        REQUIRE(ev.size() == 1);
        CHECK(ev[0].step == 100);
        CHECK(ev[0].expert == 0);
        CHECK(ev[0].kind == CollapseKind::dead);
        CHECK(c.is_dead(0, 0));
        // a state saved mid-interval continues the same way
        c.count_weighted(0, std::vector<double>{4.0, 36.0});  // 0.1 >= 0.05: revived
        std::stringstream ss;
        BinaryWriter bw(ss);
        c.save(bw);
        CollapseTracker back(1, 2);
        BinaryReader br(ss);
        back.load(br);
        std::vector<CollapseEvent> ev2;
        back.end_interval(200, 0, ev2);
        REQUIRE(ev2.size() == 1);
        CHECK(ev2[0].kind == CollapseKind::revived);
        // then an interval of routed counts only is counted as before
        back.count(0, std::vector<int>{0, 10});
        back.end_interval(300, 0, ev2);
        REQUIRE(ev2.size() == 2);
        CHECK(ev2[1].kind == CollapseKind::dead);
    }
}
