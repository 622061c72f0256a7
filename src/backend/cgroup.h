// The cgroup directories of this process (/proc/self/cgroup), for the limits that containers and
// Slurm set on it: the CPU quota (threads.cpp) and the memory limit (memory.cpp).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace moe {

// Calls visit(dir, v2) for every directory of this process's cgroup that holds `controller`
// ("cpu", "memory"), from its own cgroup up to the root of the hierarchy: the limit of every
// level applies. v2: the unified hierarchy (/sys/fs/cgroup); else a v1 controller's mount. Inside
// a container the path may not exist under the mount (its root is the container's cgroup), so the
// mount's root is visited too. Visits nothing where /proc/self/cgroup cannot be read.
void for_each_cgroup_dir(std::string_view controller,
                         const std::function<void(const std::string& dir, bool v2)>& visit);

}  // namespace moe
