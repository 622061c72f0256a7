// Capacity limit and drop policies (METRICS.md): C = ceil(factor * T * k / N) processed
// assignments per expert; factor 0 = no limit. They act on the plan (its routed assignments,
// each expert's segment in slot order) and so respect what a router already dropped:
//   position: an expert keeps its first C assignments in slot order (for top-k: token order);
//   score:    an expert keeps the C assignments with the largest gate weight (ties: the earlier
//             slot wins), still listed in slot order.
// The plan is compacted in place to the kept assignments; dropped[i] = D[i], capacity = C.
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "routing/routing_plan.h"

namespace moe {

int64_t capacity_of(double factor, int T, int K, int N);

// k: the experts per token that C is sized for (router.k). scratch is reused between calls.
void capacity_apply(RoutingPlan& plan, double factor, int k, DropPolicy policy,
                    std::vector<int>& scratch);

}  // namespace moe
