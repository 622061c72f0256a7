#include "backend/cgroup.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace moe {

void for_each_cgroup_dir(std::string_view controller,
                         const std::function<void(const std::string& dir, bool v2)>& visit) {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1).
        const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        const std::string controllers = line.substr(a + 1, b - a - 1);
        std::string path = line.substr(b + 1);
        const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
        std::string root = "/sys/fs/cgroup";
        if (!v2) {
            std::stringstream cs(controllers);
            std::string c;
            bool has = false;
            while (std::getline(cs, c, ',')) has = has || c == controller;
            if (!has) continue;
            std::error_code ec;
            root += "/" + controllers;  // e.g. cpu,cpuacct; some systems mount it as cpu only
            if (!std::filesystem::is_directory(root, ec))
                root = "/sys/fs/cgroup/" + std::string(controller);
        }
        for (;;) {
            visit(root + (path == "/" ? "" : path), v2);
            if (path.empty() || path == "/") break;
            const size_t slash = path.rfind('/');
            path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
        }
    }
}

}  // namespace moe
