#include "backend/memory.h"

#include "backend/cgroup.h"

#include <fstream>
#include <sstream>

namespace moe {

namespace {

std::optional<uint64_t> read_u64(const std::string& path) {
    std::ifstream in(path);
    std::string word;
    if (!(in >> word) || word == "max") return std::nullopt;
    try {
        return std::stoull(word);
    } catch (...) {
        return std::nullopt;
    }
}

std::optional<uint64_t> cgroup_headroom() {
    std::optional<uint64_t> best;
    for_each_cgroup_dir("memory", [&best](const std::string& dir, bool v2) {
        auto limit = read_u64(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
        auto used = read_u64(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
        if (limit && *limit < (uint64_t{1} << 60)) {
            const uint64_t room = used && *used < *limit ? *limit - *used : 0;
            if (!best || room < *best) best = room;
        }
    });
    return best;
}

}  // namespace

std::optional<AvailableMemory> available_memory() {
    std::optional<AvailableMemory> out;
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib) {
        std::getline(in, unit);
        if (key == "MemAvailable:") {
            out = AvailableMemory{kib * 1024, "MemAvailable"};
            break;
        }
    }
    if (auto room = cgroup_headroom(); room && (!out || *room < out->bytes))
        out = AvailableMemory{*room, "the cgroup memory limit"};
    return out;
}

}  // namespace moe
