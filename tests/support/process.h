// Runs the moe-sim binary (or any shell command) from a test and captures its output and status.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace moe::test {

struct ProcResult {
    int code = -1;       // exit code; 128 + signal when killed
    std::string output;  // stdout and stderr together
};

// Runs `sh -c cmd 2>&1` and returns its exit code and output.
inline ProcResult run_shell(const std::string& cmd) {
    ProcResult r;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    const int status = pclose(p);
    if (WIFEXITED(status))
        r.code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        r.code = 128 + WTERMSIG(status);
    return r;
}

// The moe-sim binary, the source tree and the scratch folder are the build's, unless the
// environment names others (MOESIM_TEST_BINARY, MOESIM_TEST_SOURCE_DIR, MOESIM_TEST_TMP): a
// test binary built on one machine can then run on another (tools/gpu_check.sh).
inline std::string test_binary() {
    const char* bin = std::getenv("MOESIM_TEST_BINARY");
    return bin && *bin ? bin : MOESIM_BINARY;
}

// Runs the moe-sim binary with the given argument string.
inline ProcResult run_moesim(const std::string& args) {
    return run_shell(std::string("'") + test_binary() + "' " + args);
}

// A fresh, empty scratch directory for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
    const char* tmp = std::getenv("MOESIM_TEST_TMP");
    const std::filesystem::path d =
        std::filesystem::path(tmp && *tmp ? tmp : MOESIM_TEST_TMP) / name;
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
}

inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline std::string source_path(const std::string& rel) {
    const char* dir = std::getenv("MOESIM_TEST_SOURCE_DIR");
    return std::string(dir && *dir ? dir : MOESIM_SOURCE_DIR) + "/" + rel;
}

}  // namespace moe::test
