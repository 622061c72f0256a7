// The dense routers: soft (Jacobs et al. 1991) and soft_slots (Soft MoE, Puigcerver et al. 2023).
// Hand-built logits whose softmaxes are exact fractions, and finite-difference checks of each
// router's backward alone.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "routing/router.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

RouterConfig soft_config(RouterType type, int slots = 1, double scale = 1.0) {
    RouterConfig rc;
    rc.type = type;
    rc.scale = scale;
    rc.soft_slots.slots = slots;
    return rc;
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("soft: every token goes to every expert with gate scale * softmax") {
        // T = 2, N = 3; exp(logits) = (1, 2, 5) and (4, 2, 2): p = (1, 2, 5)/8 and (1/2, 1/4, 1/4)
        const int T = 2, N = 3;
        const std::vector<float> logits = {0.0f,           std::log(2.0f), std::log(5.0f),
                                           std::log(4.0f), std::log(2.0f), std::log(2.0f)};
        auto router = router_create(soft_config(RouterType::soft, 1, 2.0));
        CHECK(router->logit_width(N) == N);
        CHECK(router->plan_kind() == PlanKind::sparse);
        CHECK(router->max_assignments(T, N, 0.0) == size_t(T * N));
        RouterState st;
        RoutingPlan plan;
        router->reserve(st, T, N, 0.0);
        plan.reserve(T, N, router->max_assignments(T, N, 0.0));
        router->route(logits.data(), T, nullptr, Pass{}, 1, st, plan);
        const double p[2][3] = {{1.0 / 8, 2.0 / 8, 5.0 / 8}, {0.5, 0.25, 0.25}};
        CHECK(st.R == 6);
        REQUIRE(plan.A == 6);
        CHECK(plan.kind == PlanKind::sparse);
        CHECK(plan.weighted);
        for (int i = 0; i < N; ++i) {
            CHECK(plan.routed[size_t(i)] == 2);
            CHECK(plan.dropped[size_t(i)] == 0);
            CHECK(plan.offsets[size_t(i)] == 2 * i);
            // expert i: token 0 then token 1, gate 2 p[t,i]; mass = sum_t p[t,i]
            for (int t = 0; t < T; ++t) {
                const int a = 2 * i + t;
                CHECK(plan.token[size_t(a)] == t);
                CHECK(plan.gate[size_t(a)] == doctest::Approx(2.0 * p[t][i]));
                CHECK(plan.slot[size_t(a)] == t * N + i);
                CHECK(st.probs[size_t(t * N + i)] == doctest::Approx(p[t][i]));
            }
            CHECK(plan.mass[size_t(i)] == doctest::Approx(p[0][i] + p[1][i]));
        }
    }

    TEST_CASE("soft: router backward matches finite differences") {
        const int T = 5, N = 4;
        auto router = router_create(soft_config(RouterType::soft, 1, 1.5));
        RouterState st;
        RoutingPlan plan;
        router->reserve(st, T, N, 0.0);
        plan.reserve(T, N, router->max_assignments(T, N, 0.0));
        std::vector<float> logits = normal_vector(size_t(T) * N, 7);
        const std::vector<float> wg = normal_vector(size_t(T) * N, 8);  // per slot
        const std::vector<float> wp = normal_vector(size_t(T) * N, 9);  // per probability
        // f = sum_s wg[s] gate(s) + sum wp p: the gate of slot s is in the plan at the a with
        // slot[a] = s
        auto f = [&] {
            router->route(logits.data(), T, nullptr, Pass{}, 1, st, plan);
            double v = 0.0;
            for (int a = 0; a < plan.A; ++a)
                v += double(wg[size_t(plan.slot[size_t(a)])]) * plan.gate[size_t(a)];
            for (size_t j = 0; j < wp.size(); ++j) v += double(wp[j]) * st.probs[j];
            return v;
        };
        f();
        std::vector<float> dl(size_t(T) * N);
        router->backward(st, wg.data(), wp.data(), dl.data());
        expect_gradient(check_gradient(f, logits.data(), dl.data(), logits.size(), {},
                                       [] { return Signature{}; }),
                        "soft logits", 1e-3);
    }

    TEST_CASE("soft_slots: dispatch is a softmax over tokens and combine over slots") {
        // T = 2, N = 2, S = 2 (4 slots). exp(logits): token 0 (1, 3, 1, 2), token 1 (3, 1, 2, 1).
        //   dispatch, down each column: (1/4, 3/4), (3/4, 1/4), (1/3, 2/3), (2/3, 1/3)
        //   combine, along each row: (1, 3, 1, 2)/7 and (3, 1, 2, 1)/7
        //   p[t,i] = combine mass on expert i's slots: (4/7, 3/7) for both tokens
        //   mass[i] = dispatch mass of expert i's slots = 2 (each slot's column sums to 1)
        const int T = 2, N = 2, S = 2, L = 4;
        const float l2 = std::log(2.0f), l3 = std::log(3.0f);
        const std::vector<float> logits = {0.0f, l3, 0.0f, l2, l3, 0.0f, l2, 0.0f};
        auto router = router_create(soft_config(RouterType::soft_slots, S));
        CHECK(router->logit_width(N) == L);
        CHECK(router->plan_kind() == PlanKind::dense);
        REQUIRE(router->max_assignments(T, N, 0.0) == size_t(L));
        RouterState st;
        RoutingPlan plan;
        router->reserve(st, T, N, 0.0);
        plan.reserve(T, N, size_t(L));
        plan.reserve_dense(T, size_t(L));
        router->route(logits.data(), T, nullptr, Pass{}, 1, st, plan);
        CHECK(plan.kind == PlanKind::dense);
        CHECK(plan.weighted);
        REQUIRE(plan.A == L);
        CHECK(plan.T == T);
        CHECK(st.R == 2 * T * L);
        const double dispatch[2][4] = {{0.25, 0.75, 1.0 / 3, 2.0 / 3},
                                       {0.75, 0.25, 2.0 / 3, 1.0 / 3}};
        const double combine[2][4] = {{1.0 / 7, 3.0 / 7, 1.0 / 7, 2.0 / 7},
                                      {3.0 / 7, 1.0 / 7, 2.0 / 7, 1.0 / 7}};
        for (int t = 0; t < T; ++t)
            for (int j = 0; j < L; ++j) {
                CHECK(plan.dispatch[size_t(t * L + j)] == doctest::Approx(dispatch[t][j]));
                CHECK(plan.combine[size_t(t * L + j)] == doctest::Approx(combine[t][j]));
            }
        for (int t = 0; t < T; ++t) {
            CHECK(st.probs[size_t(t * N)] == doctest::Approx(4.0 / 7));
            CHECK(st.probs[size_t(t * N + 1)] == doctest::Approx(3.0 / 7));
        }
        for (int i = 0; i < N; ++i) {
            CHECK(plan.offsets[size_t(i)] == i * S);
            CHECK(plan.routed[size_t(i)] == S);
            CHECK(plan.dropped[size_t(i)] == 0);
            CHECK(plan.mass[size_t(i)] == doctest::Approx(2.0));
        }
        CHECK(plan.offsets[size_t(N)] == L);
    }

    TEST_CASE("soft_slots: router backward matches finite differences") {
        for (int S : {1, 3}) {
            CAPTURE(S);
            const int T = 5, N = 3, L = N * S;
            auto router = router_create(soft_config(RouterType::soft_slots, S));
            RouterState st;
            RoutingPlan plan;
            router->reserve(st, T, N, 0.0);
            plan.reserve(T, N, size_t(L));
            plan.reserve_dense(T, size_t(L));
            std::vector<float> logits = normal_vector(size_t(T) * L, 11);
            const std::vector<float> w = normal_vector(2 * size_t(T) * L, 12);  // [wD | wC]
            const std::vector<float> wp = normal_vector(size_t(T) * N, 13);
            const size_t TL = size_t(T) * L;
            auto f = [&] {
                router->route(logits.data(), T, nullptr, Pass{}, 1, st, plan);
                double v = 0.0;
                for (size_t j = 0; j < TL; ++j)
                    v += double(w[j]) * plan.dispatch[j] + double(w[TL + j]) * plan.combine[j];
                for (size_t j = 0; j < wp.size(); ++j) v += double(wp[j]) * st.probs[j];
                return v;
            };
            f();
            std::vector<float> dl(TL);
            router->backward(st, w.data(), wp.data(), dl.data());
            expect_gradient(check_gradient(f, logits.data(), dl.data(), logits.size(), {},
                                           [] { return Signature{}; }),
                            "soft_slots logits", 1e-3);
        }
    }
}
