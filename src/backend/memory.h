// How much memory this process may still take: the machine's MemAvailable (/proc/meminfo),
// lowered by the cgroup's limit (v2 memory.max - memory.current, v1 memory.limit_in_bytes -
// memory.usage_in_bytes) where that is lower, as containers and Slurm's --mem set it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace moe {

struct AvailableMemory {
    uint64_t bytes = 0;
    std::string source;  // "MemAvailable" or "the cgroup memory limit"
};

// nullopt where neither can be read (then nothing is refused).
std::optional<AvailableMemory> available_memory();

}  // namespace moe
