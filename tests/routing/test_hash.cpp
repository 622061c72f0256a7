// Hash router (routing/routers/hash.cpp): token ids to a fixed hash of the id, the clusters
// task's locality-sensitive hash (sign pattern of fixed Gaussian projections), k distinct experts
// with gates 1/k, no gradient into the logits, capacity after it, the dispatch size, its rules
// and a short training run.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "backend/rng.h"
#include "support/route_harness.h"
#include "support/router_runs.h"

using namespace moe;
using namespace moe::test;

namespace {

RouterConfig hash_cfg(int k, int bits = 10, double scale = 1.0) {
    RouterConfig rc;
    rc.type = RouterType::hash;
    rc.k = k;
    rc.hash.bits = bits;
    rc.scale = scale;
    return rc;
}

// The documented cell code of hash j: bit b set iff <x, w_{j,b}> >= 0, w drawn from
// (seed, kStreamRouting, step 1, index (j B + b) * dim + d).
uint64_t cell_code(const float* x, int dim, int j, int B, uint64_t seed) {
    const Rng rng{seed, kStreamRouting, 1};
    uint64_t code = 0;
    for (int b = 0; b < B; ++b) {
        float dot = 0.0f;
        for (int d = 0; d < dim; ++d) dot += x[d] * rng.normal(uint64_t((j * B + b) * dim + d));
        if (dot >= 0.0f) code |= uint64_t(1) << b;
    }
    return code;
}

std::vector<float> gaussian(size_t n, uint64_t seed) {
    const Rng rng{seed, 99, 0};
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = rng.normal(i);
    return v;
}

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE("hash: a token id goes to a fixed uniform hash of the id, gates 1/k") {
        // N = 8, k = 2. Token ids {5, 9, 5, 123}: tokens 0 and 2 share their id, so their
        // experts. Hash j of id is the draw U_j(id) in [0, 8) of (seed 1, kStreamRouting,
        // step 3, index id, lane j); a second draw equal to the first moves to the next index.
        const int T = 4, N = 8;
        const std::vector<int> ids = {5, 9, 5, 123};
        const std::vector<float> logits(size_t(T) * N, 0.0f);
        RouteHarness h(hash_cfg(2), T, N);
        h.run(logits.data(), true, nullptr, 0, ids.data());
        const Rng rng{1, kStreamRouting, 3};
        for (int t = 0; t < T; ++t) {
            CAPTURE(t);
            const int e0 = int(rng.uniform_int(uint64_t(ids[size_t(t)]), N, 0));
            int e1 = int(rng.uniform_int(uint64_t(ids[size_t(t)]), N, 1));
            if (e1 == e0) e1 = (e1 + 1) % N;
            CHECK(h.st.sel[size_t(t) * 2] == e0);
            CHECK(h.st.sel[size_t(t) * 2 + 1] == e1);
            CHECK(h.gates_of(t) == std::vector<float>{0.5f, 0.5f});
            // p: 1/2 on the two experts, 0 elsewhere
            for (int i = 0; i < N; ++i)
                CHECK(h.st.probs[size_t(t) * N + i] == (i == e0 || i == e1 ? 0.5f : 0.0f));
        }
        CHECK(h.st.sel[0] == h.st.sel[4]);
        CHECK(h.st.sel[1] == h.st.sel[5]);
        CHECK(h.plan.A == T * 2);  // nothing dropped without capacity
        // The duplicate rule on an id whose two draws collide: the second moves to the next one.
        int id = 0;
        while (rng.uniform_int(uint64_t(id), N, 0) != rng.uniform_int(uint64_t(id), N, 1)) ++id;
        const int e = int(rng.uniform_int(uint64_t(id), N, 0));
        const std::vector<int> one = {id, id, id, id};
        h.run(logits.data(), true, nullptr, 0, one.data());
        CHECK(h.st.sel[0] == e);
        CHECK(h.st.sel[1] == (e + 1) % N);
        // another seed, another hash (of 4 distinct ids, some expert differs)
        h.run(logits.data(), true, nullptr, 0, ids.data(), 1);
        const std::vector<int> seed1(h.st.sel.begin(), h.st.sel.begin() + 8);
        h.run(logits.data(), true, nullptr, 0, ids.data(), 2);
        CHECK(std::vector<int>(h.st.sel.begin(), h.st.sel.begin() + 8) != seed1);
    }

    TEST_CASE("hash: clusters inputs go by the sign pattern of fixed Gaussian projections") {
        // dim 5, B = 6 bits, N = 16, k = 1. Token 0 is x, token 1 is 3.5 x (same signs of every
        // projection: same cell, same expert), token 2 is -x (every sign flipped: the
        // complementary cell), token 3 another point.
        const int T = 4, N = 16, dim = 5, B = 6;
        std::vector<float> x = {0.3f, -1.2f, 0.7f, 2.0f, -0.4f};
        std::vector<float> in;
        for (float s : {1.0f, 3.5f, -1.0f}) {
            for (float v : x) in.push_back(s * v);
        }
        for (float v : {1.0f, 1.0f, -1.0f, 0.5f, 0.25f}) in.push_back(v);
        const std::vector<float> logits(size_t(T) * N, 0.0f);
        RouteHarness h(hash_cfg(1, B), T, N);
        h.run(logits.data(), true, in.data(), dim);
        const Rng cells{1, kStreamRouting, 2};
        const uint64_t c0 = cell_code(x.data(), dim, 0, B, 1);
        const uint64_t c3 = cell_code(in.data() + 15, dim, 0, B, 1);
        const uint64_t mask = (uint64_t(1) << B) - 1;
        CHECK(h.st.sel[0] == int(cells.uniform_int(c0, N, 0)));
        CHECK(h.st.sel[1] == h.st.sel[0]);
        CHECK(h.st.sel[2] == int(cells.uniform_int(~c0 & mask, N, 0)));
        CHECK(h.st.sel[3] == int(cells.uniform_int(c3, N, 0)));
        CHECK(h.gates_of(0) == std::vector<float>{1.0f});
        // the same inputs route the same way at every step
        std::vector<int> first(h.st.sel.begin(), h.st.sel.begin() + T);
        h.run(logits.data(), false, in.data(), dim);
        CHECK(std::vector<int>(h.st.sel.begin(), h.st.sel.begin() + T) == first);
    }

    TEST_CASE(
        "hash: locality: with 1 bit, at most 2 experts, and k = 3 gives, 3 distinct experts") {
        const int T = 200, N = 16, dim = 8;
        const std::vector<float> in = gaussian(size_t(T) * dim, 4);
        const std::vector<float> logits(size_t(T) * N, 0.0f);
        RouteHarness one(hash_cfg(1, 1), T, N);
        one.run(logits.data(), true, in.data(), dim);
        std::set<int> used(one.st.sel.begin(), one.st.sel.begin() + T);
        CHECK(used.size() <= 2);  // two cells: the half-spaces of one hyperplane
        RouteHarness three(hash_cfg(3, 10, 1.5), T, N);
        three.run(logits.data(), true, in.data(), dim);
        for (int t = 0; t < T; ++t) {
            const std::vector<int> e = three.experts_of(t);
            REQUIRE(e.size() == 3);
            CHECK(std::set<int>(e.begin(), e.end()).size() == 3);
            for (float g : three.gates_of(t)) CHECK(g == doctest::Approx(0.5));  // 1.5 / 3
        }
        // 10 bits: the 200 points spread over many experts
        CHECK(std::set<int>(three.st.sel.begin(), three.st.sel.begin() + 3 * T).size() >= 12);
    }

    TEST_CASE("hash: the logits are not read and get a zero gradient") {
        const int T = 6, N = 4, dim = 3;
        const std::vector<float> in = gaussian(size_t(T) * dim, 5);
        const std::vector<float> l1 = gaussian(size_t(T) * N, 6), l2 = gaussian(size_t(T) * N, 7);
        RouteHarness h(hash_cfg(2), T, N);
        h.run(l1.data(), true, in.data(), dim);
        const std::vector<int> sel1(h.st.sel.begin(), h.st.sel.begin() + 2 * T);
        h.run(l2.data(), true, in.data(), dim);
        CHECK(std::vector<int>(h.st.sel.begin(), h.st.sel.begin() + 2 * T) == sel1);
        std::vector<float> d_slot(size_t(2 * T), 1.0f), d_probs(size_t(T) * N, 1.0f),
            dl(size_t(T) * N, 7.0f);
        h.r->backward(h.st, d_slot.data(), d_probs.data(), dl.data());
        for (float v : dl) CHECK(v == 0.0f);
    }

    TEST_CASE("hash: dispatch grows with k not N, and capacity drops after it") {
        const int T = 32, dim = 4;
        const std::vector<float> in = gaussian(size_t(T) * dim, 8);
        for (int N : {4, 64}) {
            CAPTURE(N);
            const std::vector<float> logits(size_t(T) * N, 0.0f);
            RouteHarness h(hash_cfg(2), T, N);
            CHECK(h.r->max_assignments(T, N, 0.0) == size_t(T) * 2);
            h.run(logits.data(), true, in.data(), dim);
            CHECK(h.plan.A == T * 2);
        }
        // capacity: T = 8 tokens with one id each to N = 2 experts, k = 1, factor 0.5:
        // C = ceil(0.5 * 8 / 2) = 2; the position policy keeps each expert's first 2 tokens.
        const int T2 = 8, N2 = 2;
        const std::vector<int> ids = {0, 1, 2, 3, 4, 5, 6, 7};
        const std::vector<float> logits(size_t(T2) * N2, 0.0f);
        RouteHarness h(hash_cfg(1), T2, N2, 0.5);
        h.run(logits.data(), true, nullptr, 0, ids.data(), 1, 1);
        const Rng rng{1, kStreamRouting, 3};
        int seen[2] = {0, 0};
        for (int t = 0; t < T2; ++t) {
            const int e = int(rng.uniform_int(uint64_t(t), N2, 0));
            const bool kept = seen[e]++ < 2;
            CAPTURE(t);
            CHECK(h.experts_of(t) == (kept ? std::vector<int>{e} : std::vector<int>{}));
        }
        for (int i = 0; i < N2; ++i) {
            CHECK(h.plan.routed[size_t(i)] == seen[i]);
            CHECK(h.plan.dropped[size_t(i)] == std::max(0, seen[i] - 2));
        }
    }

    TEST_CASE("hash: its row's rules") {
        const std::string base = "router: {type: hash, k: 1}\n";
        CHECK(config_error(base) == "(no error)");
        CHECK(config_error("router: {type: hash, k: 2, hash: {bits: 20}}\n") == "(no error)");
        CHECK(config_error("router: {type: hash, noise: 0.5}\n").find("router.noise") !=
              std::string::npos);
        CHECK(config_error("router: {type: hash, score: sigmoid}\n").find("router.score") !=
              std::string::npos);
        CHECK(config_error("router: {type: hash, normalize: true}\n").find("router.normalize") !=
              std::string::npos);
        CHECK(config_error(base + "balance: {bias_rate: 0.001}\n").find("balance.bias_rate") !=
              std::string::npos);
        CHECK(config_error(base + "balance: {z_loss: 0.001}\n").find("balance.z_loss") !=
              std::string::npos);
        CHECK(config_error("router: {type: hash, k: 5}\nexperts: {count: 4}\n").find("router.k") !=
              std::string::npos);
        CHECK(config_error("router: {type: topk, hash: {bits: 4}}\n")
                  .find("only read by router.type: hash") != std::string::npos);
        CHECK(config_error("router: {type: hash, hash: {bits: 63}}\n").find("router.hash.bits") !=
              std::string::npos);
    }

    TEST_CASE("hash: a short training run: fixed routing, no router gradient") {
        const RouterRun run =
            router_run("hash_run", {"router.type=hash", "router.k=2", "balance.loss=none"});
        REQUIRE(run.layers.size() >= 8);
        int train_rows = 0;
        for (const Row& r : run.layers) {
            CAPTURE(r.at("step"));
            CAPTURE(r.at("split"));
            // p = 1/2 on two of 16 experts: entropy ln 2 / ln 16 = 1/4, top-1 probability 1/2
            CHECK(cell(r, "router_entropy") == doctest::Approx(0.25).epsilon(1e-5));
            CHECK(cell(r, "top1_prob") == doctest::Approx(0.5).epsilon(1e-6));
            if (r.at("split") == "train") {
                ++train_rows;
                CHECK(cell(r, "router_grad_task") == 0.0);
                CHECK(cell(r, "router_grad_aux") == 0.0);
            } else if (!r.at("flip_rate").empty() && r.at("flip_rate") != "nan") {
                CHECK(cell(r, "flip_rate") == 0.0);  // the same eval set, the same experts
            }
        }
        CHECK(train_rows >= 4);
    }

}  // TEST_SUITE
