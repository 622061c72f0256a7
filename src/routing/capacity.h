// Capacity limit and drop policies (METRICS.md): C = ceil(factor * T * K / N) processed
// assignments per expert; factor 0 = no limit. Which assignments are dropped:
//   position: in slot order (token order), the first C assignments of each expert are kept;
//   score:    per expert, the C assignments with the largest gate weight are kept (ties: the
//             earlier slot wins).
// Then builds the CSR (offsets, slot, pos) over the kept assignments, each expert's segment in
// slot order, and the counts routed[i] = A[i], dropped[i] = D[i].
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "routing/routing_plan.h"

namespace moe {

int64_t capacity_of(double factor, int T, int K, int N);

// Reads plan.sel and plan.gate; writes kept, pos, offsets, slot, routed, dropped, capacity.
// scratch is reused between calls (no allocation once grown).
void capacity_apply(RoutingPlan& plan, double factor, DropPolicy policy, std::vector<int>& scratch);

}  // namespace moe
