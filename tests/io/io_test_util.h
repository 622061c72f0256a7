// Shared helpers of the io tests: a fresh scratch folder per test case, whole-file reads.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace moe::test {

// MOESIM_TEST_TMP/io/<name>, emptied and created.
inline std::filesystem::path io_scratch(const std::string& name) {
    const std::filesystem::path dir = std::filesystem::path(MOESIM_TEST_TMP) / "io" / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void spit(const std::filesystem::path& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary);
    out << s;
}

}  // namespace moe::test
