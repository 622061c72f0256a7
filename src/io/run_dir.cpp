#include "io/run_dir.h"

#include "io/io_error.h"

#include "config/config_error.h"
#include "io/atomic_file.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace moe {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& dir, std::string_view what, const std::error_code& ec) {
    throw IoError(fmt::format("run directory '{}': {}: {}", dir.string(), what, ec.message()));
}

}  // namespace

bool is_run_output_name(const fs::path& filename) {
    const std::string name = filename.string();
    return name == "config.yaml" || name == "checkpoint.bin" ||
           (filename.extension() == ".csv" && name != ".csv") || is_atomic_temp_name(name);
}

void prepare_run_dir(const fs::path& dir, bool force) {
    std::error_code ec;
    const fs::file_status st = fs::status(dir, ec);
    if (ec && st.type() != fs::file_type::not_found) fail(dir, "cannot access it", ec);

    if (st.type() == fs::file_type::not_found) {
        fs::create_directories(dir, ec);
        if (ec) fail(dir, "cannot create it", ec);
        return;
    }
    if (st.type() != fs::file_type::directory)
        throw UserError(
            fmt::format("run directory '{}' exists and is not a directory", dir.string()));

    bool empty = true;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename() != kRunLockName) empty = false;
    if (ec) fail(dir, "cannot read it", ec);
    if (empty) return;
    if (!force)
        throw UserError(
            fmt::format("run directory '{}' exists and is not empty; use --force to overwrite it",
                        dir.string()));

    // Collect first, then remove: removing while iterating is unspecified.
    std::vector<fs::path> outputs;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::file_status fst = it->symlink_status(ec);
        if (ec) break;
        if (fs::is_regular_file(fst) && is_run_output_name(it->path().filename()))
            outputs.push_back(it->path());
    }
    if (ec) fail(dir, "cannot read it", ec);
    for (const fs::path& p : outputs) {
        fs::remove(p, ec);
        if (ec) fail(dir, fmt::format("cannot remove '{}'", p.filename().string()), ec);
    }
}

RunDirLock::RunDirLock(const fs::path& dir) {
    std::error_code ec;
    const fs::file_status st = fs::status(dir, ec);
    if (st.type() == fs::file_type::not_found) {
        fs::create_directories(dir, ec);
        if (ec) fail(dir, "cannot create it", ec);
    } else if (st.type() != fs::file_type::directory) {
        if (ec) fail(dir, "cannot access it", ec);
        throw IoError(
            fmt::format("run directory '{}' exists and is not a directory", dir.string()));
    }
    const fs::path path = dir / kRunLockName;
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        fail(dir, fmt::format("cannot open its lock file '{}'", kRunLockName),
             std::error_code(errno, std::generic_category()));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        std::string holder;
        if (err == EWOULDBLOCK) {
            char buf[32] = {};
            const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
            if (n > 0) holder = std::string(buf, size_t(n));
            while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
                holder.pop_back();
        }
        ::close(fd);
        if (err != EWOULDBLOCK)
            fail(dir, fmt::format("cannot lock '{}'", kRunLockName),
                 std::error_code(err, std::generic_category()));
        throw UserError(fmt::format(
            "run directory '{}' is in use by another moe-sim run ({}); wait for it to end, stop "
            "it, "
            "or use another --out",
            dir.string(), holder.empty() ? std::string("pid unknown") : "pid " + holder));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
        // The lock holds without the pid in it; a second run then names no pid.
    }
    fd_ = fd;
}

RunDirLock::~RunDirLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
}

RunDirLock::RunDirLock(RunDirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

RunDirLock& RunDirLock::operator=(RunDirLock&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

}  // namespace moe
