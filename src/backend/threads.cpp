#include "backend/threads.h"

#include "backend/cgroup.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace moe {

namespace {

std::optional<std::string> read_small_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::optional<double> parse_number(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    long long v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return double(v);
}

int quota_to_cpus(double quota, double period) {
    return std::max(1, int(std::ceil(quota / period - 1e-9)));
}

void take_min(std::optional<int>& acc, std::optional<int> v) {
    if (v && (!acc || *v < *acc)) acc = v;
}

// cgroup v1: the cpu controller's quota and period, in microseconds; quota -1 = no limit.
std::optional<int> cfs_limit(const std::string& dir) {
    auto q = read_small_file(dir + "/cpu.cfs_quota_us");
    auto p = read_small_file(dir + "/cpu.cfs_period_us");
    if (!q || !p) return std::nullopt;
    auto quota = parse_number(*q), period = parse_number(*p);
    if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
    return quota_to_cpus(*quota, *period);
}

}  // namespace

int affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

std::optional<int> cpu_max_limit(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    const size_t sp = text.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    const std::string_view q = text.substr(0, sp), p = text.substr(sp + 1);
    if (q == "max") return std::nullopt;
    auto quota = parse_number(q), period = parse_number(p);
    if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
    return quota_to_cpus(*quota, *period);
}

std::optional<int> cgroup_cpu_limit() {
    std::optional<int> limit;
    for_each_cgroup_dir("cpu", [&limit](const std::string& dir, bool v2) {
        if (v2) {
            if (auto t = read_small_file(dir + "/cpu.max")) take_min(limit, cpu_max_limit(*t));
        } else {
            take_min(limit, cfs_limit(dir));
        }
    });
    return limit;
}

int default_threads() {
    if (const char* e = std::getenv("OMP_NUM_THREADS"); e && *e)
        return std::max(1, omp_get_max_threads());
    int n = affinity_cpus();
    if (std::optional<int> q = cgroup_cpu_limit()) n = std::min(n, *q);
    return std::max(1, n);
}

void adopt_wait_policy(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", kDefaultSpinCount, 0) != 0) return;
    execv("/proc/self/exe", argv);
    // Not re-executed (no /proc): the runtime keeps its defaults; children see the variable.
}

}  // namespace moe
