// Capacity limit and drop policies (routing/capacity.h, METRICS.md) on plans built by hand, and
// the CSR invariants on seeded random plans.
#include "routing/capacity.h"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "backend/rng.h"

using namespace moe;

namespace {

constexpr int kT = 4, kN = 3, kK = 2;
// T = 4 tokens, K = 2, N = 3. Slots s = t*K + j:
//   s:    0  1 | 2  3 | 4  5 | 6  7
//   sel:  0  1 | 0  2 | 0  1 | 1  0
//   gate: .6 .4|.5 .5 |.9 .4 |.4 .4
// routed A = {4, 3, 1}. With factor 0.75: C = ceil(0.75 * 4 * 2 / 3) = ceil(2) = 2.
const std::vector<int> kSel = {0, 1, 0, 2, 0, 1, 1, 0};
const std::vector<float> kGate = {0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.4f, 0.4f, 0.4f};

// The plan of K slots per token (sel[s] = -1: a slot the router dropped itself).
RoutingPlan plan_of(int T, int N, int K, const std::vector<int>& sel,
                    const std::vector<float>& gate) {
    RoutingPlan p;
    p.reserve(T, N, size_t(T) * K);
    plan_from_slots(p, T, T * K, sel.data(), gate.data(), nullptr, K);
    return p;
}

RoutingPlan hand_plan() {
    return plan_of(kT, kN, kK, kSel, kGate);
}

std::vector<int> offsets_of(const RoutingPlan& p) {
    return {p.offsets.begin(), p.offsets.begin() + p.N + 1};
}
std::vector<int> slots_of(const RoutingPlan& p) {
    return {p.slot.begin(), p.slot.begin() + p.A};
}
// pos[s]: the assignment of slot s, or -1 when it is not in the plan (dropped).
std::vector<int> pos_of(const RoutingPlan& p, int S) {
    std::vector<int> pos(size_t(S), -1);
    for (int a = 0; a < p.A; ++a) pos[size_t(p.slot[size_t(a)])] = a;
    return pos;
}
std::vector<int> kept_of(const RoutingPlan& p, int S) {
    std::vector<int> kept = pos_of(p, S);
    for (int& k : kept) k = k >= 0;
    return kept;
}

// The plan is consistent with the slots it came from: each expert's segment holds only its own
// slots, in slot order, with their tokens and gates; counts add up; the capacity holds.
void check_plan(const RoutingPlan& p, int K, const std::vector<int>& sel,
                const std::vector<float>& gate) {
    CHECK(p.offsets[0] == 0);
    CHECK(p.offsets[size_t(p.N)] == p.A);
    int routed = 0, live = 0;
    for (int s : sel) live += s >= 0;
    for (int i = 0; i < p.N; ++i) {
        routed += p.routed[size_t(i)];
        CHECK(p.processed(i) == p.routed[size_t(i)] - p.dropped[size_t(i)]);
        if (p.capacity > 0) CHECK(p.processed(i) <= p.capacity);
        for (int a = p.offsets[size_t(i)]; a < p.offsets[size_t(i) + 1]; ++a) {
            const int s = p.slot[size_t(a)];
            CHECK(sel[size_t(s)] == i);
            CHECK(p.gate[size_t(a)] == gate[size_t(s)]);
            CHECK(p.token[size_t(a)] == s / K);
            if (a > p.offsets[size_t(i)]) CHECK(s > p.slot[size_t(a) - 1]);
        }
    }
    CHECK(routed == live);
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("capacity_of: C = ceil(factor * T * K / N), 0 = no limit") {
        CHECK(capacity_of(1.25, 8, 2, 4) == 5);       // 1.25 * 16 / 4 = 5 exactly
        CHECK(capacity_of(1.25, 1024, 2, 8) == 320);  // exact, not 321 by rounding
        CHECK(capacity_of(1.0, 3, 1, 2) == 2);        // ceil(1.5)
        CHECK(capacity_of(0.5, 8, 2, 4) == 2);
        CHECK(capacity_of(0.1, 4, 1, 16) == 1);  // ceil(0.025)
        CHECK(capacity_of(0.0, 8, 2, 4) == 0);
    }

    TEST_CASE("capacity: factor 0 keeps everything") {
        RoutingPlan p = hand_plan();
        std::vector<int> scratch;
        capacity_apply(p, 0.0, kK, DropPolicy::position, scratch);
        CHECK(p.capacity == 0);
        CHECK(p.routed == std::vector<int>{4, 3, 1});
        CHECK(p.dropped == std::vector<int>{0, 0, 0});
        CHECK(offsets_of(p) == std::vector<int>{0, 4, 7, 8});
        // segments in slot order: expert 0 {0,2,4,7}, expert 1 {1,5,6}, expert 2 {3}
        CHECK(slots_of(p) == std::vector<int>{0, 2, 4, 7, 1, 5, 6, 3});
        CHECK(pos_of(p, 8) == std::vector<int>{0, 4, 1, 7, 2, 5, 6, 3});
        check_plan(p, kK, kSel, kGate);
    }

    TEST_CASE("capacity: position policy drops the later slots") {
        // C = 2. Expert 0 routed slots {0,2,4,7}: keeps 0, 2; drops 4, 7.
        //        Expert 1 routed slots {1,5,6}: keeps 1, 5; drops 6. Expert 2 {3}: keeps 3.
        RoutingPlan p = hand_plan();
        std::vector<int> scratch;
        capacity_apply(p, 0.75, kK, DropPolicy::position, scratch);
        CHECK(p.capacity == 2);
        CHECK(p.routed == std::vector<int>{4, 3, 1});
        CHECK(p.dropped == std::vector<int>{2, 1, 0});
        CHECK(kept_of(p, 8) == std::vector<int>{1, 1, 1, 1, 0, 1, 0, 0});
        CHECK(offsets_of(p) == std::vector<int>{0, 2, 4, 5});
        CHECK(slots_of(p) == std::vector<int>{0, 2, 1, 5, 3});
        CHECK(pos_of(p, 8) == std::vector<int>{0, 2, 1, 4, -1, 3, -1, -1});
        check_plan(p, kK, kSel, kGate);
    }

    TEST_CASE("capacity: score policy drops the lowest gates, the earlier slot wins ties") {
        // C = 2. Expert 0 gates s0 .6, s2 .5, s4 .9, s7 .4: keeps s4, s0; drops s2, s7.
        //        Expert 1 gates s1 .4, s5 .4, s6 .4 (a three-way tie): keeps s1, s5; drops s6.
        //        Expert 2: keeps s3.
        RoutingPlan p = hand_plan();
        std::vector<int> scratch;
        capacity_apply(p, 0.75, kK, DropPolicy::score, scratch);
        CHECK(p.capacity == 2);
        CHECK(p.routed == std::vector<int>{4, 3, 1});
        CHECK(p.dropped == std::vector<int>{2, 1, 0});
        CHECK(kept_of(p, 8) == std::vector<int>{1, 1, 0, 1, 1, 1, 0, 0});
        CHECK(offsets_of(p) == std::vector<int>{0, 2, 4, 5});
        // segments stay in slot order (not gate order): expert 0 {0, 4}, expert 1 {1, 5}, expert 2 {3}
        CHECK(slots_of(p) == std::vector<int>{0, 4, 1, 5, 3});
        CHECK(pos_of(p, 8) == std::vector<int>{0, 2, -1, 4, 1, 3, -1, -1});
        check_plan(p, kK, kSel, kGate);
    }

    TEST_CASE("capacity: random policy keeps C uniformly chosen, by the keyed draws") {
        // C = 2. Each slot s draws Rng{seed 7, kStreamCapacityDrop, step = key 3}.bits(s) >> 32:
        //   s0 2356656906  s1 1772128712  s2 1499632396  s3 3616549213
        //   s4  879071911  s5 2819516573  s6 1616384626  s7 4094682641
        // the C smallest draws are kept. Expert 0 {0,2,4,7}: keeps s4, s2; drops s0, s7.
        // Expert 1 {1,5,6}: keeps s6, s1; drops s5. Expert 2: keeps s3.
        RoutingPlan p = hand_plan();
        std::vector<int> scratch;
        DropContext ctx;
        ctx.seed = 7;
        ctx.key = 3;
        capacity_apply(p, 0.75, kK, DropPolicy::random, scratch, ctx);
        CHECK(p.capacity == 2);
        CHECK(p.dropped == std::vector<int>{2, 1, 0});
        CHECK(kept_of(p, 8) == std::vector<int>{0, 1, 1, 1, 1, 0, 1, 0});
        CHECK(slots_of(p) == std::vector<int>{2, 4, 1, 6, 3});  // kept ones in slot order
        check_plan(p, kK, kSel, kGate);
        // key 4: s1 3945917487, s5 196282008, s6 2473044455: expert 1 keeps s5, s6 instead
        // (expert 0 keeps s2, s4 again: s0 3659882795, s2 2037075941, s4 1527106609, s7 3579434260)
        ctx.key = 4;
        p = hand_plan();
        capacity_apply(p, 0.75, kK, DropPolicy::random, scratch, ctx);
        CHECK(kept_of(p, 8) == std::vector<int>{0, 0, 1, 1, 1, 1, 1, 0});
        check_plan(p, kK, kSel, kGate);
    }

    TEST_CASE("capacity: random policy: same key same choice and other keys other choices") {
        const RoutingPlan p0 = hand_plan();
        std::vector<int> scratch;
        DropContext ctx;
        ctx.seed = 11;
        std::vector<int> count(8, 0);  // how often each slot is kept
        std::vector<std::vector<int>> choices;
        const int keys = 2000;
        for (int key = 0; key < keys; ++key) {
            ctx.key = uint64_t(key);
            RoutingPlan p = p0, q = p0;
            capacity_apply(p, 0.75, kK, DropPolicy::random, scratch, ctx);
            capacity_apply(q, 0.75, kK, DropPolicy::random, scratch, ctx);
            const std::vector<int> kept = kept_of(p, 8);
            CHECK(kept == kept_of(q, 8));  // the same key: the same choice
            // counts are min(routed, C) = {2, 2, 1} whatever the draws
            CHECK(p.dropped == std::vector<int>{2, 1, 0});
            CHECK(offsets_of(p) == std::vector<int>{0, 2, 4, 5});
            check_plan(p, kK, kSel, kGate);
            for (int s = 0; s < 8; ++s) count[size_t(s)] += kept[size_t(s)];
            if (key < 8) choices.push_back(kept);
        }
        // different keys: not always the same choice
        bool differ = false;
        for (const auto& c : choices) differ = differ || c != choices[0];
        CHECK(differ);
        // uniform: expert 0 keeps each of its 4 slots half the time, expert 1 each of 3 two thirds
        for (int s : {0, 2, 4, 7}) CHECK(std::abs(count[size_t(s)] / double(keys) - 0.5) < 0.05);
        for (int s : {1, 5, 6}) CHECK(std::abs(count[size_t(s)] / double(keys) - 2.0 / 3.0) < 0.05);
        CHECK(count[3] == keys);
    }

    TEST_CASE("capacity: priority policy keeps the tokens of highest top-1 probability") {
        // C = 2. Token priorities (max_i p[t,i]): t0 .5, t1 .9, t2 .7, t3 .7; slot s is token s/2.
        // Expert 0 {s0 t0 .5, s2 t1 .9, s4 t2 .7, s7 t3 .7}: keeps s2, then s4 (tie with s7: the
        //   earlier slot); drops s0, s7.
        // Expert 1 {s1 t0 .5, s5 t2 .7, s6 t3 .7}: keeps s5, s6; drops s1. Expert 2: keeps s3.
        const std::vector<float> priority = {0.5f, 0.9f, 0.7f, 0.7f};
        RoutingPlan p = hand_plan();
        std::vector<int> scratch;
        DropContext ctx;
        ctx.priority = priority.data();
        capacity_apply(p, 0.75, kK, DropPolicy::priority, scratch, ctx);
        CHECK(p.capacity == 2);
        CHECK(p.dropped == std::vector<int>{2, 1, 0});
        CHECK(kept_of(p, 8) == std::vector<int>{0, 0, 1, 1, 1, 1, 1, 0});
        CHECK(slots_of(p) == std::vector<int>{2, 4, 5, 6, 3});
        check_plan(p, kK, kSel, kGate);
    }

    TEST_CASE("capacity: capacity.min raises C when the limit is on") {
        std::vector<int> scratch;
        DropContext ctx;
        ctx.min_capacity = 3;
        // factor 0.75: C = max(2, 3) = 3. Expert 0 {0,2,4,7} keeps 0, 2, 4; drops 7.
        RoutingPlan p = hand_plan();
        capacity_apply(p, 0.75, kK, DropPolicy::position, scratch, ctx);
        CHECK(p.capacity == 3);
        CHECK(p.dropped == std::vector<int>{1, 0, 0});
        CHECK(kept_of(p, 8) == std::vector<int>{1, 1, 1, 1, 1, 1, 1, 0});
        check_plan(p, kK, kSel, kGate);
        // a minimum below C changes nothing: C = max(2, 1) = 2
        ctx.min_capacity = 1;
        p = hand_plan();
        capacity_apply(p, 0.75, kK, DropPolicy::position, scratch, ctx);
        CHECK(p.capacity == 2);
        CHECK(p.dropped == std::vector<int>{2, 1, 0});
        // factor 0 stays dropless
        ctx.min_capacity = 3;
        p = hand_plan();
        capacity_apply(p, 0.0, kK, DropPolicy::position, scratch, ctx);
        CHECK(p.capacity == 0);
        CHECK(p.dropped == std::vector<int>{0, 0, 0});
    }

    TEST_CASE("capacity: respects the slots a router dropped itself") {
        // The hand plan with slots 0 and 2 dropped by the router (GShard's random second expert):
        // expert 0 is routed {4, 7} only, so C = 2 keeps both; they are not counted as routed.
        std::vector<int> sel = kSel;
        sel[0] = sel[2] = -1;
        RoutingPlan p = plan_of(kT, kN, kK, sel, kGate);
        CHECK(p.routed == std::vector<int>{2, 3, 1});
        std::vector<int> scratch;
        capacity_apply(p, 0.75, kK, DropPolicy::position, scratch);
        CHECK(p.dropped == std::vector<int>{0, 1, 0});
        CHECK(kept_of(p, 8) == std::vector<int>{0, 1, 0, 1, 1, 1, 0, 1});
        check_plan(p, kK, sel, kGate);
        // by token: token 0 has only slot 1; token 1 slot 3; token 2 slots 4, 5; token 3 slot 7
        plan_index_by_token(p, scratch);
        const std::vector<int> to(p.tok_offsets.begin(), p.tok_offsets.begin() + 5);
        CHECK(to == std::vector<int>{0, 1, 2, 4, 5});
        std::vector<int> slots_by_token;
        for (int i = 0; i < p.A; ++i)
            slots_by_token.push_back(p.slot[size_t(p.tok_assign[size_t(i)])]);
        CHECK(slots_by_token == std::vector<int>{1, 3, 4, 5, 7});
    }

    TEST_CASE("capacity: a plan reused with other sizes and policies stays consistent") {
        // seeded random plans: CSR invariants, and every policy keeps the same number per expert
        RoutingPlan p;
        std::vector<int> scratch;
        const Rng rng{5, 99, 0};
        uint64_t draw = 0;
        for (int round = 0; round < 20; ++round) {
            const int T = 1 + int(rng.uniform_int(draw++, 40)),
                      N = 1 + int(rng.uniform_int(draw++, 9));
            const int K = 1 + int(rng.uniform_int(draw++, uint64_t(N)));
            const double factor = double(rng.uniform_int(draw++, 5)) * 0.5;  // 0, 0.5 .. 2
            std::vector<int> sel(size_t(T) * K);
            std::vector<float> gate(size_t(T) * K);
            for (int t = 0; t < T; ++t) {
                // K distinct experts per token: consecutive experts from a random start
                const int start = int(rng.uniform_int(draw++, uint64_t(N)));
                for (int j = 0; j < K; ++j) {
                    sel[size_t(t * K + j)] = (start + j) % N;
                    gate[size_t(t * K + j)] = rng.uniform(draw++);
                }
            }
            CAPTURE(T);
            CAPTURE(N);
            CAPTURE(K);
            CAPTURE(factor);
            p = plan_of(T, N, K, sel, gate);
            capacity_apply(p, factor, K, DropPolicy::position, scratch);
            check_plan(p, K, sel, gate);
            const std::vector<int> processed_position = offsets_of(p);
            std::vector<float> priority(static_cast<size_t>(T));
            for (float& v : priority) v = rng.uniform(draw++);
            DropContext ctx;
            ctx.seed = 5;
            ctx.key = uint64_t(round);
            ctx.priority = priority.data();
            for (DropPolicy policy : {DropPolicy::random, DropPolicy::priority}) {
                p = plan_of(T, N, K, sel, gate);
                capacity_apply(p, factor, K, policy, scratch, ctx);
                check_plan(p, K, sel, gate);
                CHECK(offsets_of(p) == processed_position);
            }
            p = plan_of(T, N, K, sel, gate);
            capacity_apply(p, factor, K, DropPolicy::score, scratch);
            check_plan(p, K, sel, gate);
            CHECK(offsets_of(p) == processed_position);
            // the by-token index lists every assignment once, each token's in slot order
            plan_index_by_token(p, scratch);
            std::vector<int> seen(size_t(p.A), 0);
            for (int t = 0; t < T; ++t)
                for (int i = p.tok_offsets[size_t(t)]; i < p.tok_offsets[size_t(t) + 1]; ++i) {
                    const int a = p.tok_assign[size_t(i)];
                    seen[size_t(a)]++;
                    CHECK(p.token[size_t(a)] == t);
                    if (i > p.tok_offsets[size_t(t)])
                        CHECK(p.slot[size_t(a)] > p.slot[size_t(p.tok_assign[size_t(i) - 1])]);
                }
            for (int c : seen) CHECK(c == 1);
        }
    }

}  // TEST_SUITE
