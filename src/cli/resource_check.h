// What a config will need before it runs: memory (counted like `moe-sim bench` counts it, plus the
// task's data and the routing statistics) and the work of the task's data setup. `validate`,
// `run` and `bench` refuse, with one line naming the size and the keys that drive it (exit 2),
// a config that cannot fit in the memory this process may take or whose setup would take hours,
// instead of failing with std::bad_alloc after minutes.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace moe {

struct MemoryPart {
    std::string what;  // "training set"
    std::string keys;  // "data.train_size, data.clusters.dim"
    double bytes = 0;
};

struct ResourceEstimate {
    std::vector<MemoryPart> parts;
    double bytes() const;
    double setup_ops = 0;  // inner-loop operations of the task's data setup (an upper bound)
};

ResourceEstimate estimate_resources(const Config& cfg);

// Setup work above this is refused: about an hour on one core.
inline constexpr double kMaxSetupOps = 4e11;

// Throws UserError when the estimate exceeds available_memory() or kMaxSetupOps.
void check_resources(const Config& cfg);

// "10.0 TiB", "512.0 MiB"
std::string format_bytes(double bytes);

}  // namespace moe
