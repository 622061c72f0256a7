#include "routing/routing_plan.h"

#include <algorithm>

#include "backend/check.h"

namespace moe {

void RoutingPlan::reserve(int T_max, int N_, size_t A_max) {
    N = N_;
    offsets.resize(size_t(N_) + 1);
    token.resize(A_max);
    gate.resize(A_max);
    slot.resize(A_max);
    tok_offsets.resize(size_t(T_max) + 1);
    tok_assign.resize(A_max);
    routed.resize(size_t(N_));
    dropped.resize(size_t(N_));
    mass.resize(size_t(N_));
}

void RoutingPlan::reserve_dense(int T_max, size_t A_max) {
    dispatch.resize(size_t(T_max) * A_max);
    combine.resize(size_t(T_max) * A_max);
}

void plan_from_slots(RoutingPlan& plan, int T, int R, const int* expert, const float* gate,
                     const int* tokens, int per_token) {
    const int N = plan.N;
    MOESIM_CHECK(size_t(R) <= plan.token.size(), "more slots than the plan was reserved for");
    MOESIM_CHECK(size_t(T) + 1 <= plan.tok_offsets.size(), "more tokens than reserved");
    plan.kind = PlanKind::sparse;
    plan.weighted = false;
    plan.T = T;
    plan.capacity = 0;
    std::fill(plan.routed.begin(), plan.routed.end(), 0);
    std::fill(plan.dropped.begin(), plan.dropped.end(), 0);
    for (int s = 0; s < R; ++s)
        if (expert[s] >= 0) plan.routed[size_t(expert[s])]++;
    int* off = plan.offsets.data();
    off[0] = 0;
    for (int i = 0; i < N; ++i) off[i + 1] = off[i] + plan.routed[size_t(i)];
    plan.A = off[N];
    // Counting sort by expert, stable in slot order; offsets[i] serve as cursors, then shift back.
    for (int s = 0; s < R; ++s) {
        const int e = expert[s];
        if (e < 0) continue;
        const int a = off[e]++;
        plan.token[size_t(a)] = tokens ? tokens[s] : s / per_token;
        plan.gate[size_t(a)] = gate[s];
        plan.slot[size_t(a)] = s;
    }
    for (int i = N; i > 0; --i) off[i] = off[i - 1];
    off[0] = 0;
}

void plan_index_by_token(RoutingPlan& plan, std::vector<int>& scratch) {
    const int T = plan.T, A = plan.A;
    int* to = plan.tok_offsets.data();
    std::fill(to, to + T + 1, 0);
    for (int a = 0; a < A; ++a) to[plan.token[size_t(a)] + 1]++;
    for (int t = 0; t < T; ++t) to[t + 1] += to[t];
    scratch.assign(to, to + T);  // cursors
    for (int a = 0; a < A; ++a)
        plan.tok_assign[size_t(scratch[size_t(plan.token[size_t(a)])]++)] = a;
    // Within a token: slot order (insertion sort; a token has few assignments).
    const int* slot = plan.slot.data();
    for (int t = 0; t < T; ++t) {
        int* b = plan.tok_assign.data() + to[t];
        const int n = to[t + 1] - to[t];
        for (int i = 1; i < n; ++i) {
            const int v = b[i];
            int j = i;
            while (j > 0 && slot[b[j - 1]] > slot[v]) {
                b[j] = b[j - 1];
                --j;
            }
            b[j] = v;
        }
    }
}

}  // namespace moe
