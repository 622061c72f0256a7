// Expert-choice router (routing/routers/expert_choice.cpp): which tokens each expert takes on a
// hand-built matrix (ties: the lower token index), uncovered tokens, the capacity C and its
// clamp, the plan's layout (expert-major slots, by-token index), a gradient check of its backward
// and the config rules of its row.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "config/config_error.h"
#include "config/config_load.h"
#include "routing/router.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

std::unique_ptr<Router> expert_choice(int k, double scale = 1.0) {
    RouterConfig rc;
    rc.type = RouterType::expert_choice;
    rc.k = k;
    rc.scale = scale;
    return router_create(rc);
}

struct EcRouted {
    const Router* r;
    int T, N;
    double factor;
    RouterState st;
    RoutingPlan plan;
    std::vector<int> scratch;

    EcRouted(const Router& router, int T_, int N_, double factor_)
        : r(&router), T(T_), N(N_), factor(factor_) {
        r->reserve(st, T, N, factor);
        plan.reserve(T, N, r->max_assignments(T, N, factor));
    }
    void run(const float* logits) {
        Pass pass;
        pass.training = true;
        pass.capacity_factor = factor;
        r->route(logits, T, nullptr, pass, 1, st, plan);
        plan_index_by_token(plan, scratch);
    }
    std::vector<int> tokens() const { return {plan.token.begin(), plan.token.begin() + plan.A}; }
    std::vector<float> gates() const { return {plan.gate.begin(), plan.gate.begin() + plan.A}; }
};

std::string load_error(const std::string& yaml) {
    try {
        config_load_string(yaml, "t.yaml");
    } catch (const UserError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("expert_choice: each expert takes its C best tokens, ties to the lower token") {
        // T = 4, N = 2, k = 1, factor 1: C = ceil(1 * 4 * 1 / 2) = 2. Softmax over the 2 experts:
        //   token 0: logits (2, 0)  p = (s, 1 - s), s = 1 / (1 + e^-2) = .881
        //   token 1: (0, 0)         p = (.5, .5)
        //   token 2: (0, 0)         p = (.5, .5)     ties token 1 everywhere
        //   token 3: (-1, 0)        p = (r, 1 - r), r = 1 / (1 + e) = .269
        // expert 0 ranks 0 (.881), 1 (.5), 2 (.5), 3: takes {0, 1} (1 beats 2 on the tie);
        // expert 1 ranks 3 (.731), 1, 2, 0: takes {3, 1}. Token 1 gets both experts, token 2 none.
        const std::vector<float> l = {2, 0, 0, 0, 0, 0, -1, 0};
        auto r = expert_choice(1);
        EcRouted e(*r, 4, 2, 1.0);
        e.run(l.data());
        const double s = 1.0 / (1.0 + std::exp(-2.0)), q = 1.0 / (1.0 + std::exp(1.0));
        const RoutingPlan& plan = e.plan;
        CHECK(e.st.R == 4);  // N * C, not T * N
        CHECK(plan.A == 4);
        CHECK(plan.routed == std::vector<int>{2, 2});
        CHECK(plan.dropped == std::vector<int>{0, 0});
        CHECK(std::vector<int>(plan.offsets.begin(), plan.offsets.begin() + 3) ==
              std::vector<int>{0, 2, 4});
        // expert-major slots, each expert's tokens best first: slot i*C + rank
        CHECK(e.tokens() == std::vector<int>{0, 1, 3, 1});
        CHECK(std::vector<int>(plan.slot.begin(), plan.slot.begin() + 4) ==
              std::vector<int>{0, 1, 2, 3});
        const std::vector<float> g = e.gates();
        CHECK(g[0] == doctest::Approx(s));
        CHECK(g[1] == doctest::Approx(0.5));
        CHECK(g[2] == doctest::Approx(1.0 - q));
        CHECK(g[3] == doctest::Approx(0.5));
        // by token: 0 -> {a0}, 1 -> {a1 (expert 0), a3 (expert 1)}, 2 -> none (dropped), 3 -> {a2}
        CHECK(std::vector<int>(plan.tok_offsets.begin(), plan.tok_offsets.begin() + 5) ==
              std::vector<int>{0, 1, 3, 3, 4});
        CHECK(std::vector<int>(plan.tok_assign.begin(), plan.tok_assign.begin() + 4) ==
              std::vector<int>{0, 1, 3, 2});
        CHECK(plan.token_assignments(2) == 0);
        // the probabilities are the softmax over experts
        CHECK(e.st.probs[0] == doctest::Approx(s));
        CHECK(e.st.probs[6] == doctest::Approx(q));
    }

    TEST_CASE(
        "expert_choice: C = ceil(factor T k / N), at most T, and router.scale scales the gates") {
        const int T = 6, N = 4;
        const std::vector<float> l = normal_vector(size_t(T) * N, 3);
        struct Case {
            int k;
            double factor;
            int C;
        };
        // ceil(1.0 * 6 * 2 / 4) = 3; ceil(1.25 * 6 * 1 / 4) = ceil(1.875) = 2;
        // ceil(4 * 6 * 2 / 4) = 12 > T: every expert takes all 6; factor 0 = no limit = T
        for (const Case c : {Case{2, 1.0, 3}, Case{1, 1.25, 2}, Case{2, 4.0, 6}, Case{2, 0.0, 6}}) {
            CAPTURE(c.k);
            CAPTURE(c.factor);
            auto r = expert_choice(c.k);
            CHECK(r->max_assignments(T, N, c.factor) == size_t(N) * c.C);
            EcRouted e(*r, T, N, c.factor);
            e.run(l.data());
            CHECK(e.plan.A == N * c.C);
            for (int i = 0; i < N; ++i) CHECK(e.plan.routed[size_t(i)] == c.C);
        }
        // router.scale multiplies every gate
        auto r = expert_choice(2, 2.5);
        EcRouted e(*r, T, N, 1.0);
        e.run(l.data());
        for (int a = 0; a < e.plan.A; ++a) {
            const int t = e.plan.token[size_t(a)], i = a / 3;
            CHECK(e.plan.gate[size_t(a)] ==
                  doctest::Approx(2.5 * e.st.probs[size_t(t) * N + size_t(i)]));
        }
    }

    TEST_CASE("expert_choice: gradient check of backward (d_gate and d_probs into d_logits)") {
        const int T = 7, N = 4;
        for (double scale : {1.0, 2.5}) {
            for (int k : {1, 2}) {
                const std::string what =
                    "k=" + std::to_string(k) + " scale=" + std::to_string(scale);
                CAPTURE(what);
                auto r = expert_choice(k, scale);
                EcRouted e(*r, T, N, 1.0);
                std::vector<float> l = normal_vector(size_t(T) * N, 11, 2.0f);
                e.run(l.data());
                const int R = e.st.R;
                const std::vector<float> c = normal_vector(size_t(R), 12);
                const std::vector<float> d = normal_vector(size_t(T) * N, 13);
                std::vector<float> dl(size_t(T) * N, 99.0f);
                r->backward(e.st, c.data(), d.data(), dl.data());
                auto f = [&] {
                    e.run(l.data());
                    return weighted_sum(c.data(), e.st.sel_gate.data(), size_t(R)) +
                           weighted_sum(d.data(), e.st.probs.data(), d.size());
                };
                auto sig = [&] {
                    return Signature(e.st.sel_token.begin(), e.st.sel_token.begin() + R);
                };
                expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig), what,
                                1e-3);
            }
        }
    }

    TEST_CASE("expert_choice: its row's rules") {
        CHECK(config_load_string("router: {type: expert_choice}\n", "t.yaml").router.type ==
              RouterType::expert_choice);
        CHECK(load_error("router: {type: expert_choice}\ncapacity: {factor: 0}\n") ==
              "t.yaml:2:20: capacity.factor: expert_choice needs a capacity (each expert takes "
              "ceil(factor * T * k / N) tokens), got capacity.factor = 0.0");
        CHECK(load_error("router: {type: expert_choice}\nbalance: {loss: shazeer}\n")
                  .find("'shazeer' needs a token-choice router") != std::string::npos);
        CHECK(load_error("router: {type: expert_choice, score: sigmoid}\n").find("router.score") !=
              std::string::npos);
        CHECK(load_error("router: {type: expert_choice, normalize: true}\n")
                  .find("router.normalize") != std::string::npos);
        CHECK(load_error("router: {type: expert_choice, noise: 0.5}\n").find("router.noise") !=
              std::string::npos);
        // the top-k router's own keys are refused with expert choice
        CHECK(load_error("router: {type: expert_choice, topk: {groups: 2}}\n") ==
              "t.yaml:1:46: router.topk.groups: only read by router.type: topk, but router.type is "
              "expert_choice");
        // switch and the z-loss are fine
        CHECK_NOTHROW(config_load_string(
            "router: {type: expert_choice}\nbalance: {loss: switch, z_loss: 0.01}\n", "t.yaml"));
    }

}  // TEST_SUITE
