// Capacity limit and drop policies (routing/capacity.h, METRICS.md) on plans built by hand, and
// the CSR invariants on seeded random plans.
#include "routing/capacity.h"

#include <doctest/doctest.h>

#include <vector>

#include "backend/rng.h"

using namespace moe;

namespace {

// T = 4 tokens, K = 2, N = 3. Slots s = t*K + j:
//   s:    0  1 | 2  3 | 4  5 | 6  7
//   sel:  0  1 | 0  2 | 0  1 | 1  0
//   gate: .6 .4|.5 .5 |.9 .4 |.4 .4
// routed A = {4, 3, 1}. With factor 0.75: C = ceil(0.75 * 4 * 2 / 3) = ceil(2) = 2.
RoutingPlan hand_plan() {
    RoutingPlan p;
    p.resize(4, 3, 2);
    p.sel = {0, 1, 0, 2, 0, 1, 1, 0};
    p.gate = {0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.4f, 0.4f, 0.4f};
    return p;
}

std::vector<int> kept_of(const RoutingPlan& p) { return {p.kept.begin(), p.kept.end()}; }

// The CSR is consistent with sel/kept: each expert's segment holds exactly its kept slots, in
// slot order; pos and slot are inverse; counts add up.
void check_csr(const RoutingPlan& p) {
    const int S = p.T * p.K;
    CHECK(p.offsets[0] == 0);
    int kept = 0, routed = 0;
    for (int s = 0; s < S; ++s) {
        kept += p.kept[size_t(s)];
        if (p.kept[size_t(s)]) {
            REQUIRE(p.pos[size_t(s)] >= 0);
            REQUIRE(p.pos[size_t(s)] < p.assignments());
            CHECK(p.slot[size_t(p.pos[size_t(s)])] == s);
        } else {
            CHECK(p.pos[size_t(s)] == -1);
        }
    }
    CHECK(p.assignments() == kept);
    for (int i = 0; i < p.N; ++i) {
        routed += p.routed[size_t(i)];
        CHECK(p.processed(i) == p.routed[size_t(i)] - p.dropped[size_t(i)]);
        if (p.capacity > 0) CHECK(p.processed(i) <= p.capacity);
        for (int a = p.offsets[size_t(i)]; a < p.offsets[size_t(i) + 1]; ++a) {
            CHECK(p.sel[size_t(p.slot[size_t(a)])] == i);
            CHECK(p.pos[size_t(p.slot[size_t(a)])] == a);
            if (a > p.offsets[size_t(i)]) CHECK(p.slot[size_t(a)] > p.slot[size_t(a) - 1]);
            CHECK(p.token_of(a) == p.slot[size_t(a)] / p.K);
        }
    }
    CHECK(routed == S);
}

}  // namespace

TEST_SUITE("routing") {

TEST_CASE("capacity_of: C = ceil(factor * T * K / N), 0 = no limit") {
    CHECK(capacity_of(1.25, 8, 2, 4) == 5);        // 1.25 * 16 / 4 = 5 exactly
    CHECK(capacity_of(1.25, 1024, 2, 8) == 320);   // exact, not 321 by rounding
    CHECK(capacity_of(1.0, 3, 1, 2) == 2);         // ceil(1.5)
    CHECK(capacity_of(0.5, 8, 2, 4) == 2);
    CHECK(capacity_of(0.1, 4, 1, 16) == 1);        // ceil(0.025)
    CHECK(capacity_of(0.0, 8, 2, 4) == 0);
}

TEST_CASE("capacity: factor 0 keeps everything") {
    RoutingPlan p = hand_plan();
    std::vector<int> scratch;
    capacity_apply(p, 0.0, DropPolicy::position, scratch);
    CHECK(p.capacity == 0);
    CHECK(p.routed == std::vector<int>{4, 3, 1});
    CHECK(p.dropped == std::vector<int>{0, 0, 0});
    CHECK(p.offsets == std::vector<int>{0, 4, 7, 8});
    // segments in slot order: expert 0 {0,2,4,7}, expert 1 {1,5,6}, expert 2 {3}
    CHECK(p.slot == std::vector<int>{0, 2, 4, 7, 1, 5, 6, 3});
    CHECK(p.pos == std::vector<int>{0, 4, 1, 7, 2, 5, 6, 3});
    check_csr(p);
}

TEST_CASE("capacity: position policy drops the later slots") {
    // C = 2. Expert 0 routed slots {0,2,4,7}: keeps 0, 2; drops 4, 7.
    //        Expert 1 routed slots {1,5,6}: keeps 1, 5; drops 6. Expert 2 {3}: keeps 3.
    RoutingPlan p = hand_plan();
    std::vector<int> scratch;
    capacity_apply(p, 0.75, DropPolicy::position, scratch);
    CHECK(p.capacity == 2);
    CHECK(p.routed == std::vector<int>{4, 3, 1});
    CHECK(p.dropped == std::vector<int>{2, 1, 0});
    CHECK(kept_of(p) == std::vector<int>{1, 1, 1, 1, 0, 1, 0, 0});
    CHECK(p.offsets == std::vector<int>{0, 2, 4, 5});
    CHECK(std::vector<int>(p.slot.begin(), p.slot.begin() + 5) == std::vector<int>{0, 2, 1, 5, 3});
    CHECK(p.pos == std::vector<int>{0, 2, 1, 4, -1, 3, -1, -1});
    check_csr(p);
}

TEST_CASE("capacity: score policy drops the lowest gates, the earlier slot wins ties") {
    // C = 2. Expert 0 gates s0 .6, s2 .5, s4 .9, s7 .4: keeps s4, s0; drops s2, s7.
    //        Expert 1 gates s1 .4, s5 .4, s6 .4 (a three-way tie): keeps s1, s5; drops s6.
    //        Expert 2: keeps s3.
    RoutingPlan p = hand_plan();
    std::vector<int> scratch;
    capacity_apply(p, 0.75, DropPolicy::score, scratch);
    CHECK(p.capacity == 2);
    CHECK(p.routed == std::vector<int>{4, 3, 1});
    CHECK(p.dropped == std::vector<int>{2, 1, 0});
    CHECK(kept_of(p) == std::vector<int>{1, 1, 0, 1, 1, 1, 0, 0});
    CHECK(p.offsets == std::vector<int>{0, 2, 4, 5});
    // segments stay in slot order (not gate order): expert 0 {0, 4}, expert 1 {1, 5}, expert 2 {3}
    CHECK(std::vector<int>(p.slot.begin(), p.slot.begin() + 5) == std::vector<int>{0, 4, 1, 5, 3});
    CHECK(p.pos == std::vector<int>{0, 2, -1, 4, 1, 3, -1, -1});
    check_csr(p);
}

TEST_CASE("capacity: a plan reused with other sizes and policies stays consistent") {
    // seeded random plans: CSR invariants, and both policies keep the same number per expert
    RoutingPlan p;
    std::vector<int> scratch;
    const Rng rng{5, 99, 0};
    uint64_t draw = 0;
    for (int round = 0; round < 20; ++round) {
        const int T = 1 + int(rng.uniform_int(draw++, 40)), N = 1 + int(rng.uniform_int(draw++, 9));
        const int K = 1 + int(rng.uniform_int(draw++, uint64_t(N)));
        const double factor = double(rng.uniform_int(draw++, 5)) * 0.5;   // 0, 0.5 .. 2
        p.resize(T, N, K);
        for (int t = 0; t < T; ++t) {
            // K distinct experts per token: consecutive experts from a random start
            const int start = int(rng.uniform_int(draw++, uint64_t(N)));
            for (int j = 0; j < K; ++j) {
                p.sel[size_t(t * K + j)] = (start + j) % N;
                p.gate[size_t(t * K + j)] = rng.uniform(draw++);
            }
        }
        CAPTURE(T);
        CAPTURE(N);
        CAPTURE(K);
        CAPTURE(factor);
        capacity_apply(p, factor, DropPolicy::position, scratch);
        check_csr(p);
        const std::vector<int> processed_position(p.offsets);
        capacity_apply(p, factor, DropPolicy::score, scratch);
        check_csr(p);
        CHECK(p.offsets == processed_position);
    }
}

}  // TEST_SUITE
