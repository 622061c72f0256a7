// Random router (routing/routers/random.cpp): each distinct input gets fixed uniformly random
// experts (a hash of its exact identity, no locality), gates 1/k, no gradient, its rules and a
// short training run.
#include <doctest/doctest.h>

#include <bit>
#include <set>
#include <string>
#include <vector>

#include "backend/rng.h"
#include "support/route_harness.h"
#include "support/router_runs.h"

using namespace moe;
using namespace moe::test;

namespace {

RouterConfig random_cfg(int k) {
    RouterConfig rc;
    rc.type = RouterType::random;
    rc.k = k;
    return rc;
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("random: an input's exact bytes pick its experts, with no locality") {
        // dim 3, N = 8, k = 1. Token 0 is x, token 1 is x again (same bytes: same expert),
        // token 2 is 2x (hash would keep its cell; random draws anew). id = splitmix64 chained
        // over the float bit patterns from splitmix64(dim); expert = U_0(id) of (seed 1,
        // kStreamRouting, step 5).
        const int T = 3, N = 8, dim = 3;
        const std::vector<float> in = {0.5f, -1.0f, 2.0f, 0.5f, -1.0f, 2.0f, 1.0f, -2.0f, 4.0f};
        const std::vector<float> logits(size_t(T) * N, 0.0f);
        RouteHarness h(random_cfg(1), T, N);
        h.run(logits.data(), true, in.data(), dim);
        const Rng rng{1, kStreamRouting, 5};
        for (int t = 0; t < T; ++t) {
            uint64_t id = rng_detail::splitmix64(uint64_t(dim));
            for (int d = 0; d < dim; ++d)
                id = rng_detail::splitmix64(
                    id ^ uint64_t(std::bit_cast<uint32_t>(in[size_t(t * dim + d)])));
            CAPTURE(t);
            CHECK(h.st.sel[size_t(t)] == int(rng.uniform_int(id, N, 0)));
            CHECK(h.gates_of(t) == std::vector<float>{1.0f});
        }
        CHECK(h.st.sel[0] == h.st.sel[1]);
        // Scaled copies of one point: hash keeps them in one cell; here they spread over experts.
        const int T2 = 64, N2 = 16;
        std::vector<float> scaled;
        for (int t = 0; t < T2; ++t)
            for (float v : {0.5f, -1.0f, 2.0f}) scaled.push_back(v * (1.0f + 0.25f * float(t)));
        const std::vector<float> l2(size_t(T2) * N2, 0.0f);
        RouteHarness r(random_cfg(1), T2, N2);
        r.run(l2.data(), true, scaled.data(), dim);
        CHECK(std::set<int>(r.st.sel.begin(), r.st.sel.begin() + T2).size() >= 10);
        RouterConfig hc = random_cfg(1);
        hc.type = RouterType::hash;
        RouteHarness hh(hc, T2, N2);
        hh.run(l2.data(), true, scaled.data(), dim);
        CHECK(std::set<int>(hh.st.sel.begin(), hh.st.sel.begin() + T2).size() == 1);
    }

    TEST_CASE("random: token ids, k = 3 distinct experts, gates 1/3, zero gradient") {
        const int T = 5, N = 4;
        const std::vector<int> ids = {7, 7, 0, 1000, 3};
        const std::vector<float> logits(size_t(T) * N, 1.0f);
        RouteHarness h(random_cfg(3), T, N);
        h.run(logits.data(), true, nullptr, 0, ids.data());
        const Rng rng{1, kStreamRouting, 4};
        for (int t = 0; t < T; ++t) {
            CAPTURE(t);
            // the documented rule: draws U_j(id), a duplicate moves to the next free index
            std::vector<int> want;
            for (int j = 0; j < 3; ++j) {
                int e = int(rng.uniform_int(uint64_t(ids[size_t(t)]), N, uint32_t(j)));
                while (std::find(want.begin(), want.end(), e) != want.end()) e = (e + 1) % N;
                want.push_back(e);
            }
            CHECK(std::vector<int>(h.st.sel.begin() + 3 * t, h.st.sel.begin() + 3 * t + 3) == want);
            for (float g : h.gates_of(t)) CHECK(g == doctest::Approx(1.0 / 3.0));
        }
        std::vector<float> d_slot(size_t(3 * T), 1.0f), dl(size_t(T) * N, 5.0f);
        h.r->backward(h.st, d_slot.data(), nullptr, dl.data());
        for (float v : dl) CHECK(v == 0.0f);
        // dispatch: T k assignments whatever N
        for (int n : {4, 64}) CHECK(h.r->max_assignments(T, n, 0.0) == size_t(T) * 3);
    }

    TEST_CASE("random: its row's rules") {
        CHECK(config_error("router: {type: random, k: 1}\n") == "(no error)");
        CHECK(config_error("router: {type: random, noise: 1}\n").find("router.noise") !=
              std::string::npos);
        CHECK(config_error("router: {type: random}\nbalance: {z_loss: 0.1}\n")
                  .find("balance.z_loss") != std::string::npos);
        CHECK(config_error("router: {type: random, hash: {bits: 4}}\n")
                  .find("only read by router.type: hash") != std::string::npos);
    }

    TEST_CASE("random: a short training run: fixed routing, no router gradient") {
        const RouterRun run = router_run("random_run", {"router.type=random", "router.k=1"});
        REQUIRE(run.layers.size() >= 8);
        for (const Row& r : run.layers) {
            CHECK(cell(r, "router_entropy") == doctest::Approx(0.0).epsilon(1e-6));
            CHECK(cell(r, "top1_prob") == doctest::Approx(1.0).epsilon(1e-6));
            if (r.at("split") == "train") {
                CHECK(cell(r, "router_grad_task") == 0.0);
                CHECK(cell(r, "router_grad_aux") == 0.0);
                // uniform random experts: no expert is far from its share over 1280 tokens
                CHECK(cell(r, "max_vio") < 1.0);
            }
        }
    }

}  // TEST_SUITE
