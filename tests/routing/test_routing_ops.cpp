// The backend's routing ops (backend.h, "Routing") on the CPU against the host routing they were
// taken from: the top-k router with softmax scores (forward and backward), plan_from_slots,
// capacity with the position and score policies, plan_index_by_token, gate_grad_to_slots, and the
// z-loss and the Switch loss with their gradients. On
// random inputs of several shapes the ops must give the host code's bits, so a routing run through
// the ops on the CPU cannot move a result (the golden runs hold).
#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/vec_math.h"
#include "routing/balancer.h"
#include "routing/capacity.h"
#include "routing/router.h"
#include "support/twin.h"

using namespace moe;
using namespace moe::test;

namespace {

template <class T>
bool same_bits(const T* a, const T* b, size_t n) {
    return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}

struct Shape {
    int T, N, K;
    bool bias, normalize;
    double factor;  // capacity factor (0: none)
};

std::string tag(const Shape& s) {
    return "T=" + std::to_string(s.T) + " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) +
           (s.bias ? " bias" : "") + (s.normalize ? "" : " unnormalized") +
           " factor=" + std::to_string(s.factor);
}

const Shape kShapes[] = {{1, 1, 1, false, true, 1.0},    {1, 8, 2, true, true, 0.0},
                         {37, 1, 1, false, false, 0.5},  {64, 8, 2, true, true, 1.0},
                         {300, 16, 4, false, true, 0.3}, {2049, 8, 2, true, true, 1.25},
                         {40, 512, 2, true, false, 2.0}, {700, 64, 8, false, true, 1.0}};

}  // namespace

TEST_SUITE("routing") {
    TEST_CASE(
        "routing ops on the cpu give the host top-k router's plan and gradients bit for bit") {
        cpu::CpuBackend be(2);
        for (const Shape& sh : kShapes) {
            CAPTURE(tag(sh));
            const int T = sh.T, N = sh.N, K = sh.K, R = T * K;
            Draw draw(twin_seed("routing ops " + tag(sh)));
            const std::vector<float> logits = draw.normal(size_t(T) * N, 2.0f);
            const std::vector<float> bias = draw.normal(size_t(N), 0.05f);
            const float* b = sh.bias ? bias.data() : nullptr;

            // The host path: the router, the plan before capacity, capacity, the by-token index.
            RouterConfig rc;
            rc.type = RouterType::topk;
            rc.k = K;
            rc.normalize = sh.normalize ? Normalize::yes : Normalize::no;
            rc.scale = sh.normalize ? 1.0 : 1.5;
            const std::unique_ptr<Router> router = router_create(rc);
            RouterState st;
            RoutingPlan plan;
            router->reserve(st, T, N, sh.factor);
            plan.reserve(T, N, router->max_assignments(T, N, sh.factor));
            Pass pass;
            router->route(logits.data(), T, b, pass, 7, st, plan);
            const RoutingPlan routed_plan = plan;
            std::vector<int> scratch;
            capacity_apply(plan, sh.factor, K, DropPolicy::position, scratch);
            plan_index_by_token(plan, scratch);

            // The ops.
            const size_t nR = size_t(R), nN = size_t(N), nT = size_t(T);
            std::vector<float> p(nT * nN), gate(nR), pgate(nR);
            std::vector<int> sel(nR), off(nN + 1), token(nR), slot(nR), routed(nN), dropped(nN, 0),
                to(nT + 1), ta(nR);
            be.softmax_rows(p.data(), logits.data(), T, N, N);
            CHECK(same_bits(p.data(), st.probs.data(), p.size()));
            be.topk_rows(sel.data(), gate.data(), p.data(), b, T, N, K, sh.normalize,
                         float(rc.scale));
            CHECK(same_bits(sel.data(), st.sel.data(), size_t(R)));
            CHECK(same_bits(gate.data(), st.sel_gate.data(), size_t(R)));
            be.plan_build(off.data(), token.data(), pgate.data(), slot.data(), routed.data(),
                          sel.data(), gate.data(), nullptr, R, K, N);
            const int A0 = off[size_t(N)];
            REQUIRE(A0 == routed_plan.A);
            CHECK(off == routed_plan.offsets);
            CHECK(routed == routed_plan.routed);
            CHECK(same_bits(token.data(), routed_plan.token.data(), size_t(A0)));
            CHECK(same_bits(slot.data(), routed_plan.slot.data(), size_t(A0)));
            CHECK(same_bits(pgate.data(), routed_plan.gate.data(), size_t(A0)));
            const int64_t C = capacity_of(sh.factor, T, K, N);
            if (C > 0) {
                // the score policy, on copies of the routed plan
                RoutingPlan by_score = routed_plan;
                capacity_apply(by_score, sh.factor, K, DropPolicy::score, scratch);
                std::vector<int> o = off, tk = token, sl = slot, dr(nN, -1);
                std::vector<float> gt = pgate;
                be.capacity_score(o.data(), tk.data(), gt.data(), sl.data(), dr.data(), N, C, R);
                const size_t As = size_t(by_score.A);
                CHECK(o == by_score.offsets);
                CHECK(dr == by_score.dropped);
                CHECK(same_bits(tk.data(), by_score.token.data(), As));
                CHECK(same_bits(sl.data(), by_score.slot.data(), As));
                CHECK(same_bits(gt.data(), by_score.gate.data(), As));
            }
            CHECK(C == plan.capacity);
            if (C > 0)
                be.capacity_position(off.data(), token.data(), pgate.data(), slot.data(),
                                     dropped.data(), N, C, R);
            const int A = off[size_t(N)];
            REQUIRE(A == plan.A);
            CHECK(off == plan.offsets);
            CHECK(dropped == plan.dropped);
            CHECK(same_bits(token.data(), plan.token.data(), size_t(A)));
            CHECK(same_bits(slot.data(), plan.slot.data(), size_t(A)));
            CHECK(same_bits(pgate.data(), plan.gate.data(), size_t(A)));
            be.plan_index_by_token(to.data(), ta.data(), token.data(), slot.data(), off.data(), N,
                                   T, R);
            CHECK(same_bits(to.data(), plan.tok_offsets.data(), size_t(T) + 1));
            CHECK(same_bits(ta.data(), plan.tok_assign.data(), size_t(A)));

            // Backward: the slot gradients (zero where dropped) and a probability gradient.
            const std::vector<float> d_slot = draw.normal(size_t(R));
            const std::vector<float> d_probs = draw.normal(size_t(T) * N);
            std::vector<float> d_host(size_t(T) * N);
            router->backward(st, d_slot.data(), d_probs.data(), d_host.data());
            std::vector<float> d_ops = d_probs;
            be.topk_rows_backward(d_ops.data(), p.data(), sel.data(), d_slot.data(), T, N, K,
                                  sh.normalize, float(rc.scale), N);
            be.softmax_rows_backward(d_ops.data(), p.data(), T, N, N);
            CHECK(same_bits(d_ops.data(), d_host.data(), d_ops.size()));
            // the plan's gate gradients to the slots (zero where dropped)
            const std::vector<float> d_gate = draw.normal(nR);
            std::vector<float> ds_host(nR), ds_ops(nR, -1.0f);
            gate_grad_to_slots(plan, d_gate.data(), ds_host.data(), nR);
            be.gate_grad_to_slots(ds_ops.data(), d_gate.data(), slot.data(), off.data(), N, R);
            CHECK(same_bits(ds_ops.data(), ds_host.data(), nR));

            // The losses' reductions: the z-loss from the log-sum-exps, the Switch loss from the
            // column sums and the routed counts, each as the host losses combine them.
            std::vector<double> lse(nT), sums(nN);
            be.logsumexp_rows(lse.data(), logits.data(), T, N, N);
            // each row's value is the one z_loss adds (vec_logsumexp, backend/vec_math.h); the
            // loss itself then within rounding of the sum of squares (either side may fuse a
            // multiply-add)
            bool rows_same = true;
            double zt = 0.0;
            for (int t = 0; t < T; ++t) {
                const double host = vec_logsumexp(logits.data() + size_t(t) * N, nN);
                rows_same = rows_same && same_bits(&host, &lse[size_t(t)], 1);
                zt += lse[size_t(t)] * lse[size_t(t)];
            }
            CHECK(rows_same);
            CHECK(zt / T ==
                  doctest::Approx(z_loss(logits.data(), T, N, 0.0f, nullptr)).epsilon(1e-14));
            be.column_sums(sums.data(), p.data(), T, N);
            double sw = 0.0;
            for (int i = 0; i < N; ++i)
                sw += double(routed[size_t(i)]) / (double(T) * K) * (sums[size_t(i)] / T);
            const double sw_ops = N * sw, sw_host = switch_loss(plan, p.data(), K, 0.0f, nullptr);
            CHECK(same_bits(&sw_ops, &sw_host, 1));
            // the two losses' gradients
            std::vector<float> dz_host(nT * nN, 0.5f), dz_ops(nT * nN, 0.5f);
            z_loss(logits.data(), T, N, 0.01f, dz_host.data());
            be.z_loss_grad(dz_ops.data(), logits.data(), lse.data(), T, N, N, N, 0.01f);
            CHECK(same_bits(dz_ops.data(), dz_host.data(), dz_ops.size()));
            std::vector<float> dp_host(nT * nN, 0.25f), dp_ops(nT * nN, 0.25f);
            switch_loss(plan, p.data(), K, 0.02f, dp_host.data());
            be.switch_loss_grad(dp_ops.data(), routed.data(), T, N, K, 0.02f);
            CHECK(same_bits(dp_ops.data(), dp_host.data(), dp_ops.size()));
        }
    }

    TEST_CASE("routing ops: a strided logit row and the plan's hand-computed stable order") {
        // Two tokens' logits in rows of stride 3 (a third column the softmax must not read).
        cpu::CpuBackend be(1);
        const std::vector<float> z = {0.0f, 0.0f, 99.0f, 1.0f, 1.0f, -99.0f};
        std::vector<float> p(4);
        be.softmax_rows(p.data(), z.data(), 2, 2, 3);
        CHECK(p == std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f});
        // Slots 0..5 of 3 tokens (K = 2) to experts 1, 0, 1, -1, 0, 1: expert 0 gets slots 1, 4
        // (tokens 0, 2), expert 1 slots 0, 2, 5 (tokens 0, 1, 2); slot 3 is not routed.
        const std::vector<int> expert = {1, 0, 1, -1, 0, 1};
        const std::vector<float> g = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
        std::vector<int> off(3), token(6, -1), slot(6, -1), routed(2), dropped(2);
        std::vector<float> gate(6, -1.0f);
        be.plan_build(off.data(), token.data(), gate.data(), slot.data(), routed.data(),
                      expert.data(), g.data(), nullptr, 6, 2, 2);
        CHECK(off == std::vector<int>{0, 2, 5});
        CHECK(routed == std::vector<int>{2, 3});
        CHECK(std::vector<int>(slot.begin(), slot.begin() + 5) == std::vector<int>{1, 4, 0, 2, 5});
        CHECK(std::vector<int>(token.begin(), token.begin() + 5) ==
              std::vector<int>{0, 2, 0, 1, 2});
        CHECK(std::vector<float>(gate.begin(), gate.begin() + 5) ==
              std::vector<float>{0.2f, 0.5f, 0.1f, 0.3f, 0.6f});
        // Capacity 1: each expert keeps its first (slot 1, slot 0); 1 and 2 dropped.
        be.capacity_position(off.data(), token.data(), gate.data(), slot.data(), dropped.data(), 2,
                             1, 5);
        CHECK(off == std::vector<int>{0, 1, 2});
        CHECK(dropped == std::vector<int>{1, 2});
        CHECK(slot[0] == 1);
        CHECK(slot[1] == 0);
        // By token: token 0 has both (slot 0 = assignment 1 first, then slot 1 = assignment 0).
        std::vector<int> to(4), ta(2);
        be.plan_index_by_token(to.data(), ta.data(), token.data(), slot.data(), off.data(), 2, 3,
                               5);
        CHECK(to == std::vector<int>{0, 2, 2, 2});
        CHECK(ta == std::vector<int>{1, 0});
    }
}
