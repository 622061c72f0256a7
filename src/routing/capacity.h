// Capacity limit and drop policies (METRICS.md): C = ceil(factor * T * k / N) processed
// assignments per expert; factor 0 = no limit. They act on the plan (its routed assignments,
// each expert's segment in slot order) and so respect what a router already dropped:
//   position: an expert keeps its first C assignments in slot order (for top-k: token order);
//   score:    an expert keeps the C assignments with the largest gate weight (ties: the earlier
//             slot wins), still listed in slot order;
//   random:   an expert keeps C of its assignments chosen uniformly at random (DeepSpeed-MoE's
//             Random Token Selection): each assignment draws a 32-bit key from the counter-based
//             Rng (seed, kStreamCapacityDrop, step = the pass's noise_key, index = its slot), the
//             C smallest keys are kept (ties: the earlier slot), so the choice does not depend on
//             the thread count; kept ones stay in slot order;
//   priority: Batch-Prioritized Routing (Riquelme et al. 2021, V-MoE): an expert keeps the
//             assignments of the tokens with the highest priority first (the caller passes the
//             top-1 router probability max_i p[t,i] per token; ties: the earlier slot), kept ones
//             in slot order.
// capacity.min raises C to at least that many when the limit is on (factor > 0).
// The plan is compacted in place to the kept assignments; dropped[i] = D[i], capacity = C.
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "routing/routing_plan.h"

namespace moe {

int64_t capacity_of(double factor, int T, int K, int N);

// What the random and priority policies and capacity.min need besides the factor.
struct DropContext {
    int64_t min_capacity = 0;         // capacity.min: C = max(C, min) when factor > 0
    uint64_t seed = 0, key = 0;       // random: the run's seed and the pass's noise_key
    const float* priority = nullptr;  // priority: (T) the priority of each token
};

// k: the experts per token that C is sized for (router.k). scratch is reused between calls
// (it grows to twice the largest expert's routed assignments).
void capacity_apply(RoutingPlan& plan, double factor, int k, DropPolicy policy,
                    std::vector<int>& scratch, const DropContext& ctx = {});

}  // namespace moe
