// Helpers of the sweep tests: the moe-sim binary run as a child (stdout and stderr apart), in the
// foreground or in the background, and a tiny sweep that trains in a fraction of a second per run.
#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace moe::sweep_test {
namespace fs = std::filesystem;

inline std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void spit(const fs::path& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary);
    out << s;
}

// MOESIM_TEST_TMP/sweep/<name>, emptied and created.
inline fs::path scratch(const std::string& name) {
    const fs::path d = fs::path(MOESIM_TEST_TMP) / "sweep" / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

inline std::string quickstart() {
    return std::string(MOESIM_SOURCE_DIR) + "/configs/quickstart.yaml";
}

// Overrides that make a quickstart run take a fraction of a second.
inline std::vector<std::string> tiny(int steps = 20) {
    return {"train.steps=" + std::to_string(steps),
            "train.log_every=5",
            "train.eval_every=10",
            "data.train_size=1024",
            "data.eval_size=128",
            "train.batch_size=64"};
}

inline std::vector<std::string> concat(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

struct Child {
    pid_t pid = -1;
    fs::path out, err;
};

// Starts MOESIM_BINARY args... in `cwd` with stdout and stderr in files next to each other.
inline Child start(const std::vector<std::string>& args, const fs::path& io_dir,
                   const fs::path& cwd = {}) {
    Child c;
    c.out = io_dir / "stdout.txt";
    c.err = io_dir / "stderr.txt";
    std::vector<std::string> all = {MOESIM_BINARY};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : all) argv.push_back(s.data());
    argv.push_back(nullptr);
    c.pid = fork();
    REQUIRE(c.pid >= 0);
    if (c.pid == 0) {
        int o = ::open(c.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = ::open(c.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(127);
        if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
        execv(MOESIM_BINARY, argv.data());
        _exit(127);
    }
    return c;
}

struct Result {
    int code = -1;  // exit code; 128 + signal when killed
    std::string out, err;
    int err_lines() const { return int(std::count(err.begin(), err.end(), '\n')); }
};

inline Result finish(const Child& c) {
    int status = 0;
    while (waitpid(c.pid, &status, 0) < 0) {
    }
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(c.out);
    r.err = slurp(c.err);
    return r;
}

inline Result run(const std::vector<std::string>& args, const fs::path& io_dir,
                  const fs::path& cwd = {}) {
    return finish(start(args, io_dir, cwd));
}

inline std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) out.push_back(l);
    return out;
}

}  // namespace moe::sweep_test
