#include "routing/routing_plan.h"

#include <algorithm>

#include "backend/check.h"
#include "backend/routing_host.h"

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
    MOESIM_CHECK(size_t(R) <= plan.token.size(), "more slots than the plan was reserved for");
    MOESIM_CHECK(size_t(T) + 1 <= plan.tok_offsets.size(), "more tokens than reserved");
    plan.kind = PlanKind::sparse;
    plan.weighted = false;
    plan.T = T;
    plan.capacity = 0;
    std::fill(plan.dropped.begin(), plan.dropped.end(), 0);
    // the plan_build op's code
    plan.A =
        host_plan_build(plan.offsets.data(), plan.token.data(), plan.gate.data(), plan.slot.data(),
                        plan.routed.data(), expert, gate, tokens, R, per_token, plan.N);
}

void plan_index_by_token(RoutingPlan& plan, std::vector<int>& scratch) {
    // the plan_index_by_token op's code
    host_plan_index_by_token(plan.tok_offsets.data(), plan.tok_assign.data(), plan.token.data(),
                             plan.slot.data(), plan.T, plan.A, scratch);
}

}  // namespace moe
