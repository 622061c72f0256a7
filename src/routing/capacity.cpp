#include "routing/capacity.h"

#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "backend/rng.h"
#include "backend/routing_host.h"

namespace moe {

int64_t capacity_of(double factor, int T, int K, int N) {
    if (factor <= 0.0) return 0;
    // a tiny tolerance so that e.g. 1.25 * 1024 * 2 / 8 = 320 exactly, not 321 by rounding
    return int64_t(std::ceil(factor * double(T) * K / N - 1e-9));
}

void capacity_apply(RoutingPlan& plan, double factor, int k, DropPolicy policy,
                    std::vector<int>& scratch, const DropContext& ctx) {
    const int N = plan.N;
    int64_t C = capacity_of(factor, plan.T, k, N);
    if (C > 0) C = std::max(C, ctx.min_capacity);
    MOESIM_CHECK(policy != DropPolicy::priority || C == 0 || ctx.priority != nullptr,
                 "the priority drop policy needs the token priorities");
    const Rng rng{ctx.seed, kStreamCapacityDrop, ctx.key};
    plan.capacity = C;
    std::fill(plan.dropped.begin(), plan.dropped.end(), 0);
    if (C == 0) return;
    int* off = plan.offsets.data();
    if (policy == DropPolicy::position) {  // the capacity_position op's code
        plan.A = host_capacity_position(off, plan.token.data(), plan.gate.data(), plan.slot.data(),
                                        plan.dropped.data(), N, C);
        return;
    }
    if (policy == DropPolicy::score) {  // the capacity_score op's code
        plan.A = host_capacity_score(off, plan.token.data(), plan.gate.data(), plan.slot.data(),
                                     plan.dropped.data(), N, C, scratch);
        return;
    }
    int w = 0;  // write cursor of the compacted plan (never past the read position)
    auto keep = [&plan, &w](int a) {
        plan.token[size_t(w)] = plan.token[size_t(a)];
        plan.gate[size_t(w)] = plan.gate[size_t(a)];
        plan.slot[size_t(w)] = plan.slot[size_t(a)];
        ++w;
    };
    for (int e = 0; e < N; ++e) {
        const int b = off[e], n = off[e + 1] - b;
        off[e] = w;
        if (n <= C) {
            for (int j = 0; j < n; ++j) keep(b + j);
            continue;
        }
        plan.dropped[size_t(e)] = int(n - C);
        {
            // The C best by the policy's order (ties: the earlier slot), then back into slot
            // order. scratch[0, n): the assignments; random: scratch[n, 2n) their draws.
            scratch.resize(2 * size_t(n));
            for (int j = 0; j < n; ++j) scratch[size_t(j)] = b + j;
            const int* slot = plan.slot.data();
            const int* token = plan.token.data();
            const auto first = scratch.begin(), last = scratch.begin() + n;
            if (policy == DropPolicy::priority) {
                const float* pr = ctx.priority;
                std::sort(first, last, [pr, token, slot](int x, int y) {
                    const float px = pr[token[x]], py = pr[token[y]];
                    return px > py || (px == py && slot[x] < slot[y]);
                });
            } else {  // random: the C smallest 32-bit draws
                uint32_t* draw = reinterpret_cast<uint32_t*>(scratch.data() + n);
                for (int j = 0; j < n; ++j)
                    draw[j] = uint32_t(rng.bits(uint64_t(slot[b + j])) >> 32);
                std::sort(first, last, [draw, slot, b](int x, int y) {
                    const uint32_t dx = draw[x - b], dy = draw[y - b];
                    return dx < dy || (dx == dy && slot[x] < slot[y]);
                });
            }
            std::sort(first, first + C);  // positions = slot order
            for (int j = 0; j < C; ++j) keep(scratch[size_t(j)]);
        }
    }
    off[N] = w;
    plan.A = w;
}

}  // namespace moe
