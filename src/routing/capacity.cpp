#include "routing/capacity.h"

#include <algorithm>
#include <cmath>

namespace moe {

int64_t capacity_of(double factor, int T, int K, int N) {
    if (factor <= 0.0) return 0;
    // a tiny tolerance so that e.g. 1.25 * 1024 * 2 / 8 = 320 exactly, not 321 by rounding
    return int64_t(std::ceil(factor * double(T) * K / N - 1e-9));
}

void capacity_apply(RoutingPlan& plan, double factor, DropPolicy policy,
                    std::vector<int>& scratch) {
    const int T = plan.T, N = plan.N, K = plan.K, S = T * K;
    const int64_t C = capacity_of(factor, T, K, N);
    plan.capacity = C;
    std::fill(plan.routed.begin(), plan.routed.end(), 0);
    for (int s = 0; s < S; ++s) plan.routed[plan.sel[s]]++;

    if (C == 0 || policy == DropPolicy::position) {
        // Slot order: an expert keeps its first C assignments.
        std::fill(plan.dropped.begin(), plan.dropped.end(), 0);
        scratch.assign(size_t(N), 0);   // seen per expert
        for (int s = 0; s < S; ++s) {
            const int e = plan.sel[s];
            const bool keep = C == 0 || scratch[e] < C;
            plan.kept[s] = keep;
            if (keep) scratch[e]++;
            else plan.dropped[e]++;
        }
    } else {
        // Score: per expert, sort its slots by gate (descending), the earlier slot first on ties.
        // scratch holds the slots grouped by expert (counting sort), sorted within each group.
        scratch.resize(size_t(S) + N + 1);
        int* start = scratch.data() + S;
        std::fill(start, start + N + 1, 0);
        for (int s = 0; s < S; ++s) start[plan.sel[s] + 1]++;
        for (int e = 0; e < N; ++e) start[e + 1] += start[e];
        // fill using offsets in plan.offsets as cursors
        for (int e = 0; e <= N; ++e) plan.offsets[e] = start[e];
        for (int s = 0; s < S; ++s) scratch[plan.offsets[plan.sel[s]]++] = s;
        const float* gate = plan.gate.data();
        for (int e = 0; e < N; ++e) {
            int* b = scratch.data() + start[e];
            int* end = scratch.data() + start[e + 1];
            std::sort(b, end, [gate](int x, int y) {
                return gate[x] > gate[y] || (gate[x] == gate[y] && x < y);
            });
            const int n = int(end - b);
            plan.dropped[e] = n > C ? int(n - C) : 0;
            for (int j = 0; j < n; ++j) plan.kept[b[j]] = j < C;
        }
    }

    // CSR over kept slots, each expert's segment in slot order.
    std::fill(plan.offsets.begin(), plan.offsets.end(), 0);
    for (int s = 0; s < S; ++s)
        if (plan.kept[s]) plan.offsets[plan.sel[s] + 1]++;
    for (int e = 0; e < N; ++e) plan.offsets[e + 1] += plan.offsets[e];
    scratch.assign(plan.offsets.begin(), plan.offsets.end() - 1);   // cursors
    for (int s = 0; s < S; ++s) {
        if (!plan.kept[s]) {
            plan.pos[s] = -1;
            continue;
        }
        const int a = scratch[plan.sel[s]]++;
        plan.slot[a] = s;
        plan.pos[s] = a;
    }
}

}  // namespace moe
