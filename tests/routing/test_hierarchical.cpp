// Hierarchical router (routing/routers/hierarchical.cpp): branch then expert selection on a
// hand-built logits matrix (which experts, which gates, p = the product distribution), k_branches
// > 1 with normalised gates, capacity after it, a gradient check of both levels, the dispatch
// size, its rules and a short training run.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "backend/rng.h"
#include "support/grad_check.h"
#include "support/route_harness.h"
#include "support/router_runs.h"

using namespace moe;
using namespace moe::test;

namespace {

RouterConfig hier_cfg(int B, int KB, int k, Normalize norm = Normalize::auto_k) {
    RouterConfig rc;
    rc.type = RouterType::hierarchical;
    rc.hierarchical.branches = B;
    rc.hierarchical.k_branches = KB;
    rc.k = k;
    rc.normalize = norm;
    return rc;
}

const float kL2 = std::log(2.0f), kL3 = std::log(3.0f), kL4 = std::log(4.0f);

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("hierarchical: a token picks its branch, then its expert, gate q r") {
        // B = 2 branches of M = 2 experts (N = 4); logits per token (zb0, zb1, ze0..ze3).
        //   token 0: zb = (ln 3, 0): q = (3/4, 1/4); group 0 ze = (0, ln 2): r = (1/3, 2/3);
        //            group 1 ze = (ln 4, 0): r = (4/5, 1/5). Branch 0, expert 1, gate 3/4 * 2/3.
        //   token 1: zb = (0, ln 3): q = (1/4, 3/4); group 0 (ln 2, 0): r = (2/3, 1/3); group 1
        //            (0, 0): r = (1/2, 1/2), a tie: expert 2. Gate 3/4 * 1/2.
        const int T = 2, N = 4;
        const std::vector<float> l = {kL3, 0, 0, kL2, kL4, 0, 0, kL3, kL2, 0, 0, 0};
        RouteHarness h(hier_cfg(2, 1, 1), T, N);
        REQUIRE(h.r->logit_width(N) == 6);
        h.run(l.data(), true);
        CHECK(h.experts_of(0) == std::vector<int>{1});
        CHECK(h.experts_of(1) == std::vector<int>{2});
        CHECK(h.gates_of(0)[0] == doctest::Approx(0.5));
        CHECK(h.gates_of(1)[0] == doctest::Approx(0.375));
        // p = q r over all four experts, summing to 1
        const std::vector<double> p0 = {0.25, 0.5, 0.2, 0.05},
                                  p1 = {1.0 / 6, 1.0 / 12, 0.375, 0.375};
        for (int i = 0; i < N; ++i) {
            CHECK(h.st.probs[size_t(i)] == doctest::Approx(p0[size_t(i)]));
            CHECK(h.st.probs[size_t(N + i)] == doctest::Approx(p1[size_t(i)]));
        }
        // k_branches = 2, k = 1: token 0 takes expert 1 (branch 0) then expert 2 (branch 1),
        // 2 slots so auto normalises: p = 1/2 and 1/5, gates 5/7 and 2/7.
        RouteHarness h2(hier_cfg(2, 2, 1), T, N);
        h2.run(l.data(), true);
        CHECK(h2.experts_of(0) == std::vector<int>{1, 2});
        CHECK(h2.gates_of(0)[0] == doctest::Approx(5.0 / 7));
        CHECK(h2.gates_of(0)[1] == doctest::Approx(2.0 / 7));
        // token 1: branch 1 first (expert 2), then branch 0 (expert 0): slots in branch order
        CHECK(std::vector<int>(h2.st.sel.begin() + 2, h2.st.sel.begin() + 4) ==
              std::vector<int>{2, 0});
        // capacity after it (C sized for KB k = 2 per token): factor 0.5, C = ceil(.5 * 2 * 2 / 4)
        // = 1: expert 2 (tokens 0 and 1) keeps token 0; experts 1 and 0 keep their one token
        RouteHarness c(hier_cfg(2, 2, 1), T, N, 0.5);
        c.run(l.data(), true, nullptr, 0, nullptr, 1, 2);
        CHECK(c.experts_of(0) == std::vector<int>{1, 2});
        CHECK(c.experts_of(1) == std::vector<int>{0});
        CHECK(c.plan.dropped[2] == 1);
    }

    TEST_CASE("hierarchical: gradient check of backward, both levels") {
        const int T = 5, N = 6;
        for (int KB : {1, 2}) {
            for (int k : {1, 2}) {
                for (Normalize norm : {Normalize::yes, Normalize::no}) {
                    CAPTURE(KB);
                    CAPTURE(k);
                    CAPTURE(int(norm));
                    RouteHarness h(hier_cfg(3, KB, k, norm), T, N);
                    const int L = h.r->logit_width(N), K = KB * k;
                    const Rng rng{21, 99, 0};
                    std::vector<float> l(size_t(T) * L, 0.0f), c(size_t(T) * K, 0.0f),
                        d(size_t(T) * N, 0.0f);
                    for (size_t j = 0; j < l.size(); ++j) l[j] = rng.normal(j);
                    for (size_t j = 0; j < c.size(); ++j) c[j] = rng.normal(1000 + j);
                    for (size_t j = 0; j < d.size(); ++j) d[j] = rng.normal(2000 + j);
                    h.run(l.data(), true);
                    std::vector<float> dl(l.size(), 0.0f);
                    h.r->backward(h.st, c.data(), d.data(), dl.data());
                    auto f = [&] {
                        h.run(l.data(), true);
                        return weighted_sum(c.data(), h.st.sel_gate.data(), c.size()) +
                               weighted_sum(d.data(), h.st.probs.data(), d.size());
                    };
                    auto sig = [&] {
                        return Signature(h.st.sel.begin(), h.st.sel.begin() + T * K);
                    };
                    expect_gradient(check_gradient(f, l.data(), dl.data(), l.size(), {}, sig),
                                    "hierarchical", 1e-3);
                    // both levels get a gradient
                    double branch = 0, expert = 0;
                    for (int t = 0; t < T; ++t)
                        for (int j = 0; j < L; ++j)
                            (j < 3 ? branch : expert) += std::fabs(dl[size_t(t * L + j)]);
                    CHECK(branch > 0);
                    CHECK(expert > 0);
                }
            }
        }
    }

    TEST_CASE("hierarchical: dispatch grows with k and k_branches, not N") {
        const int T = 16;
        for (int N : {4, 64}) {
            CAPTURE(N);
            RouteHarness h(hier_cfg(2, 2, 1), T, N);
            const Rng rng{3, 99, 0};
            std::vector<float> l(size_t(T) * h.r->logit_width(N));
            for (size_t j = 0; j < l.size(); ++j) l[j] = rng.normal(j);
            h.run(l.data(), true);
            CHECK(h.plan.A == T * 2);
            CHECK(h.r->max_assignments(T, N, 0.0) == size_t(T) * 2);
        }
    }

    TEST_CASE("hierarchical: its row's rules") {
        CHECK(config_error("router: {type: hierarchical, k: 1, hierarchical: {branches: 4, "
                           "k_branches: 2}}\n") == "(no error)");
        CHECK(config_error("router: {type: hierarchical, hierarchical: {branches: 3}}\n")
                  .find("router.hierarchical.branches") != std::string::npos);
        CHECK(config_error("router: {type: hierarchical, hierarchical: {branches: 2, k_branches: "
                           "3}}\n")
                  .find("router.hierarchical.k_branches") != std::string::npos);
        // 16 experts in 8 branches: 2 per branch, k = 3 is too many
        CHECK(config_error("router: {type: hierarchical, k: 3, hierarchical: {branches: 8}}\n")
                  .find("router.k") != std::string::npos);
        CHECK(config_error("router: {type: hierarchical, noise: 1}\n").find("router.noise") !=
              std::string::npos);
        CHECK(config_error("router: {type: topk, hierarchical: {branches: 2}}\n")
                  .find("only read by router.type: hierarchical") != std::string::npos);
    }

    TEST_CASE("hierarchical: a short training run writes sane statistics") {
        const RouterRun run =
            router_run("hierarchical_run",
                       {"router.type=hierarchical", "router.k=1", "router.hierarchical.branches=4",
                        "router.hierarchical.k_branches=2"});
        int train_rows = 0;
        for (const Row& r : run.layers) {
            CHECK(cell(r, "router_entropy") > 0.0);
            CHECK(cell(r, "router_entropy") <= 1.0);
            CHECK(cell(r, "top1_prob") >= 1.0 / 16);
            CHECK(cell(r, "top1_prob") <= 1.0);
            if (r.at("split") != "train") continue;
            ++train_rows;
            CHECK(cell(r, "router_grad_task") > 0.0);
        }
        CHECK(train_rows >= 4);
        // 2 experts per token: each train window routes 2 * 1280 assignments
        double total = 0;
        for (const Row& e : run.experts)
            if (e.at("split") == "train" && e.at("step") == "10" && e.at("layer") == "0")
                total += cell(e, "tokens");
        CHECK(total == 2 * 1280.0);
    }

}  // TEST_SUITE
