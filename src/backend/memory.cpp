#include "backend/memory.h"

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
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        const std::string controllers = line.substr(a + 1, b - a - 1);
        std::string path = line.substr(b + 1);
        const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
        if (!v2 && controllers.find("memory") == std::string::npos) continue;
        const std::string root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
        for (;;) {
            const std::string dir = root + (path == "/" ? "" : path);
            auto limit = read_u64(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
            auto used = read_u64(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
            if (limit && *limit < (uint64_t{1} << 60)) {
                const uint64_t room = used && *used < *limit ? *limit - *used : 0;
                if (!best || room < *best) best = room;
            }
            if (path.empty() || path == "/") break;
            const size_t slash = path.rfind('/');
            path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
        }
    }
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
