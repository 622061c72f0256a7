#include "routing/capacity.h"

#include <algorithm>
#include <cmath>

namespace moe {

int64_t capacity_of(double factor, int T, int K, int N) {
    if (factor <= 0.0) return 0;
    // a tiny tolerance so that e.g. 1.25 * 1024 * 2 / 8 = 320 exactly, not 321 by rounding
    return int64_t(std::ceil(factor * double(T) * K / N - 1e-9));
}

void capacity_apply(RoutingPlan& plan, double factor, int k, DropPolicy policy,
                    std::vector<int>& scratch) {
    const int N = plan.N;
    const int64_t C = capacity_of(factor, plan.T, k, N);
    plan.capacity = C;
    std::fill(plan.dropped.begin(), plan.dropped.end(), 0);
    if (C == 0) return;
    int* off = plan.offsets.data();
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
        if (policy == DropPolicy::position) {
            for (int j = 0; j < C; ++j) keep(b + j);
        } else {
            // The C largest gates (ties: the earlier slot), then back into slot order.
            scratch.resize(size_t(n));
            for (int j = 0; j < n; ++j) scratch[size_t(j)] = b + j;
            const float* gate = plan.gate.data();
            const int* slot = plan.slot.data();
            std::sort(scratch.begin(), scratch.end(), [gate, slot](int x, int y) {
                return gate[x] > gate[y] || (gate[x] == gate[y] && slot[x] < slot[y]);
            });
            std::sort(scratch.begin(), scratch.begin() + C);  // positions = slot order
            for (int j = 0; j < C; ++j) keep(scratch[size_t(j)]);
        }
    }
    off[N] = w;
    plan.A = w;
}

}  // namespace moe
