// How many threads moe-sim uses by default, and how its OpenMP threads wait.
//
// Default thread count (`threads: 0`): the CPUs this process may run on, i.e. its affinity mask
// (sched_getaffinity: what taskset, numactl or Slurm's --cpus-per-task leave it), capped by the
// CPU quota of its cgroup (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us, as
// containers and Slurm set them), rounded up. OMP_NUM_THREADS, when the user sets it, wins.
//
// Wait policy: an OpenMP thread that waits at the end of a parallel region spins on its CPU
// (libgomp: about 300000 iterations) before it sleeps. On a machine whose cores other processes
// also use, the spinning threads take the CPU from the thread they wait for, and a step that
// takes a millisecond takes a scheduler time slice: the quick start took 200 s instead of 1 s.
// Sleeping at once (OMP_WAIT_POLICY=PASSIVE) cures that but costs a futex wake-up per region:
// 1.5x on a quiet machine. moe-sim therefore runs with GOMP_SPINCOUNT=1000 (a short spin, then
// sleep: as fast as spinning when quiet, as good as passive under load) unless the user sets
// OMP_WAIT_POLICY or GOMP_SPINCOUNT (docs/performance.md has the measurements).
#pragma once

#include <optional>
#include <string_view>

namespace moe {

// The number of CPUs in this process's affinity mask (at least 1).
int affinity_cpus();

// The CPU limit of a cgroup v2 cpu.max file's text ("QUOTA PERIOD" or "max PERIOD"): QUOTA /
// PERIOD rounded up, at least 1; nullopt for "max" (no limit) or text that is not a cpu.max.
std::optional<int> cpu_max_limit(std::string_view cpu_max_text);

// The CPU quota of this process's cgroup (the lowest along its path to the root), rounded up;
// nullopt where there is none or it cannot be read.
std::optional<int> cgroup_cpu_limit();

// The default thread count: OMP_NUM_THREADS when set, else min(affinity_cpus(), cgroup quota).
int default_threads();

// The spin count moe-sim sets when the user set no wait policy.
inline constexpr const char* kDefaultSpinCount = "1000";
// Called first thing in main. The OpenMP runtime reads its environment once, when the program is
// loaded, before main runs; so when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, this sets
// GOMP_SPINCOUNT=kDefaultSpinCount and executes the program again (same pid, same arguments; the second
// time the variable is set and this returns at once). Returns only where nothing needs doing or
// the re-execution failed (then the run goes on with the runtime's defaults).
void adopt_wait_policy(char** argv);

}  // namespace moe
