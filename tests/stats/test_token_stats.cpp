// TokenWindow (spec_nmi_token, the token x top-1 expert table, drops by position) and
// reported_tokens on tiny hand-built inputs, each expected value worked out by hand in the
// comments (formulas in src/stats/token_stats.h).
#include "stats/token_stats.h"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/plan_builder.h"

using moe::PositionStats;
using moe::RoutingPlan;
using moe::TokenWindow;
using moe::test::make_plan;

namespace {

// A plan of T tokens, N experts, top-1, nothing dropped: token t goes to expert e[t].
RoutingPlan top1_plan(int N, const std::vector<int>& e) {
    return make_plan(int(e.size()), N, 1, e, std::vector<uint8_t>(e.size(), 1));
}

}  // namespace

TEST_SUITE("stats") {
    TEST_CASE("spec_nmi_token is 1 when experts map one to one onto token ids") {
        // 3 experts, vocabulary 4 (id 3 never occurs); token v always on expert (v + 2) % 3
        const std::vector<int> tokens = {0, 1, 2, 0, 1, 2, 2}, top1 = {2, 0, 1, 2, 0, 1, 1};
        const std::vector<int> pos(tokens.size(), 1);
        TokenWindow w(3, 4, 2);
        w.observe(top1_plan(3, top1), top1.data(), tokens.data(), pos.data());
        CHECK(w.spec_nmi_token() == doctest::Approx(1.0));
        // the table: n[0,2] = 2, n[1,0] = 2, n[2,1] = 3, every other cell 0
        const std::vector<int64_t> table = {0, 0, 2, 2, 0, 0, 0, 3, 0, 0, 0, 0};
        CHECK(std::vector<int64_t>(w.token_expert().begin(), w.token_expert().end()) == table);
        CHECK(w.token_count(2) == 3);
        CHECK(w.token_count(3) == 0);
    }

    TEST_CASE("spec_nmi_token is 0 when the expert is independent of the token id") {
        // tokens 0 and 1 each split evenly over experts 0 and 1: n[v,i] = 1 = n_v n_i / n
        const std::vector<int> tokens = {0, 0, 1, 1}, top1 = {0, 1, 0, 1}, pos = {1, 1, 1, 1};
        TokenWindow w(2, 2, 2);
        w.observe(top1_plan(2, top1), top1.data(), tokens.data(), pos.data());
        CHECK(w.spec_nmi_token() == doctest::Approx(0.0));
    }

    TEST_CASE("spec_nmi_token: partial specialisation over two batches") {
        // batch 1: tokens {0, 0}, experts {0, 0}; batch 2: tokens {1, 1}, experts {0, 1}
        // table n = [[2, 0], [1, 1]], n = 4
        //   H(token)  = ln 2 = 0.6931472
        //   H(expert) = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623351
        //   I = 2/4 ln(4*2 / (2*3)) + 1/4 ln(4*1 / (2*3)) + 1/4 ln(4*1 / (2*1))
        //     = 0.1438410 - 0.1013663 + 0.1732868 = 0.2157616
        //   NMI = 2 I / (H(token) + H(expert)) = 0.4315231 / 1.2554823 = 0.3437110
        TokenWindow w(2, 2, 1);
        const std::vector<int> t1 = {0, 0}, e1 = {0, 0}, t2 = {1, 1}, e2 = {0, 1}, p = {0, 0};
        w.observe(top1_plan(2, e1), e1.data(), t1.data(), p.data());
        w.observe(top1_plan(2, e2), e2.data(), t2.data(), p.data());
        CHECK(w.spec_nmi_token() == doctest::Approx(0.3437110));
        w.reset();
        CHECK(std::isnan(w.spec_nmi_token()));
        CHECK(w.positions().empty());
    }

    TEST_CASE("drop rate by position: per-position counts and the token-weighted mean") {
        // Batch 1: T = 4, N = 3, K = 2 (routed per token r = 2):
        //   token  sel     kept   processed  position
        //   t0     {0, 1}  {1, 1}  2          1
        //   t1     {0, 2}  {1, 1}  2          2
        //   t2     {0, 1}  {0, 1}  1          1
        //   t3     {1, 0}  {0, 0}  0          2   <- every assignment dropped
        // position 1: tokens 2, processed 3, drop_rate 1 - 3 / (2 * 2) = 0.25, no token dropped
        // position 2: tokens 2, processed 2, drop_rate 1 - 2 / 4 = 0.5, dropped_tokens 1
        // mean weighted by tokens: (2 * 0.25 + 2 * 0.5) / 4 = 0.375 = D / (T K) = 3 / 8
        const RoutingPlan p1 =
            make_plan(4, 3, 2, {0, 1, 0, 2, 0, 1, 1, 0}, {1, 1, 1, 1, 0, 1, 0, 0});
        const std::vector<int> top1 = {0, 0, 0, 1}, tok = {0, 1, 2, 3}, pos1 = {1, 2, 1, 2};
        TokenWindow w(3, 4, 3);
        w.observe(p1, top1.data(), tok.data(), pos1.data());
        std::vector<PositionStats> ps = w.positions();
        REQUIRE(ps.size() == 2);  // position 0 had no token: no row
        CHECK(ps[0].position == 1);
        CHECK(ps[0].tokens == 2);
        CHECK(ps[0].processed == 3);
        CHECK(ps[0].dropped_tokens == 0);
        CHECK(ps[0].drop_rate == doctest::Approx(0.25));
        CHECK(ps[0].dropped_token_rate == 0.0);
        CHECK(ps[1].position == 2);
        CHECK(ps[1].tokens == 2);
        CHECK(ps[1].processed == 2);
        CHECK(ps[1].dropped_tokens == 1);
        CHECK(ps[1].drop_rate == doctest::Approx(0.5));
        CHECK(ps[1].dropped_token_rate == doctest::Approx(0.5));
        // Batch 2: T = 2, nothing dropped, both at position 1 (2 processed each).
        // position 1: tokens 4, processed 7, r = 12 / 6 = 2: drop_rate 1 - 7 / 8 = 0.125
        const RoutingPlan p2 = make_plan(2, 3, 2, {2, 1, 2, 0}, {1, 1, 1, 1});
        const std::vector<int> top1b = {2, 2}, tokb = {0, 0}, pos2 = {1, 1};
        w.observe(p2, top1b.data(), tokb.data(), pos2.data());
        ps = w.positions();
        REQUIRE(ps.size() == 2);
        CHECK(ps[0].tokens == 4);
        CHECK(ps[0].processed == 7);
        CHECK(ps[0].drop_rate == doctest::Approx(0.125));
        CHECK(ps[1].drop_rate == doctest::Approx(0.5));
        CHECK(w.token_count(0) == 3);
        // the top-1 expert per position (P = 3, N = 3), both batches:
        //   position 0: none; position 1: t0 -> 0, t2 -> 0, then 2 -> 2 (twice); position 2:
        //   t1 -> 0, t3 -> 1
        const std::vector<int64_t> by_pos(w.position_expert().begin(), w.position_expert().end());
        CHECK(by_pos == std::vector<int64_t>{0, 0, 0, 2, 0, 2, 1, 1, 0});
        w.reset();
        for (int64_t n : w.position_expert()) CHECK(n == 0);
    }

    TEST_CASE("drop rate by position: a dense plan drops nothing") {
        RoutingPlan p;
        p.kind = moe::PlanKind::dense;
        p.T = 2;
        p.N = 2;
        p.routed = {1, 1};
        p.dropped = {0, 0};
        const std::vector<int> top1 = {0, 1}, tok = {0, 1}, pos = {0, 0};
        TokenWindow w(2, 2, 1);
        w.observe(p, top1.data(), tok.data(), pos.data());
        const auto ps = w.positions();
        REQUIRE(ps.size() == 1);
        CHECK(ps[0].tokens == 2);
        CHECK_FALSE(ps[0].has_processed);
        CHECK(ps[0].drop_rate == 0.0);
        CHECK(ps[0].dropped_token_rate == 0.0);
        CHECK(w.spec_nmi_token() == doctest::Approx(1.0));
    }

    TEST_CASE("reported_tokens: every id that occurs, or the most frequent") {
        // counts: id 0: 1, id 1: 2, id 2: 1, id 3: 3, id 4: 0
        const std::vector<int> t = {3, 3, 3, 1, 1, 2, 0};
        CHECK(moe::reported_tokens(t, 5, 10) == std::vector<int>{0, 1, 2, 3});
        CHECK(moe::reported_tokens(t, 5, 4) == std::vector<int>{0, 1, 2, 3});
        CHECK(moe::reported_tokens(t, 5, 2) == std::vector<int>{1, 3});
        // ids 0 and 2 tie at 1: the lower id wins
        CHECK(moe::reported_tokens(t, 5, 3) == std::vector<int>{0, 1, 3});
        CHECK(moe::reported_tokens({}, 5, 3).empty());
    }
}
