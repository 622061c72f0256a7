// Hand-built routing plans for the statistics tests.
#pragma once

#include <cstdint>
#include <vector>

#include "routing/routing_plan.h"

namespace moe::test {

// A plan from its slots: sel (T*K) the experts of each token's K slots (in descending score
// order) and kept (T*K): the slots with kept = 0 are removed as the capacity limit removes them
// (counted in dropped), the rest keep their order; then the by-token index.
inline RoutingPlan make_plan(int T, int N, int K, std::vector<int> sel, std::vector<uint8_t> kept) {
    RoutingPlan plan;
    plan.reserve(T, N, size_t(T) * K);
    const std::vector<float> gate(size_t(T) * K, 0.0f);
    plan_from_slots(plan, T, T * K, sel.data(), gate.data(), nullptr, K);
    int w = 0;
    for (int i = 0; i < N; ++i) {
        const int b = plan.offsets[size_t(i)], e = plan.offsets[size_t(i) + 1];
        plan.offsets[size_t(i)] = w;
        for (int a = b; a < e; ++a) {
            if (!kept[size_t(plan.slot[size_t(a)])]) {
                ++plan.dropped[size_t(i)];
                continue;
            }
            plan.token[size_t(w)] = plan.token[size_t(a)];
            plan.slot[size_t(w)] = plan.slot[size_t(a)];
            ++w;
        }
    }
    plan.offsets[size_t(N)] = w;
    plan.A = w;
    std::vector<int> scratch;
    plan_index_by_token(plan, scratch);
    return plan;
}

}  // namespace moe::test
