#include "io/atomic_file.h"

#include "io/io_error.h"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

namespace moe {

namespace {

constexpr std::string_view kTempTag = ".tmp-";

[[noreturn]] void throw_io(const std::filesystem::path& path, std::string_view what, int err) {
    throw IoError(
        {Diagnostic{path.string(), 0, 0, {}, fmt::format("{}: {}", what, std::strerror(err))}});
}

std::atomic<unsigned long> temp_counter{0};

std::filesystem::path temp_path(const std::filesystem::path& path) {
    const std::string name = fmt::format(".{}{}{}-{}", path.filename().string(), kTempTag,
                                         static_cast<long>(::getpid()), temp_counter++);
    return path.parent_path() / name;
}

}  // namespace

bool is_atomic_temp_name(std::string_view filename) {
    if (filename.size() < 2 || filename.front() != '.') return false;
    const size_t tag = filename.rfind(kTempTag);
    if (tag == std::string_view::npos || tag == 0) return false;
    // <digits>-<digits>
    const std::string_view rest = filename.substr(tag + kTempTag.size());
    const size_t dash = rest.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 1 == rest.size()) return false;
    for (size_t i = 0; i < rest.size(); ++i)
        if (i != dash && (rest[i] < '0' || rest[i] > '9')) return false;
    return true;
}

int remove_atomic_temps(const std::filesystem::path& dir) {
    int removed = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        if (!is_atomic_temp_name(e.path().filename().string())) continue;
        std::error_code rm;
        removed += std::filesystem::remove(e.path(), rm) ? 1 : 0;
    }
    return removed;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view contents) {
    const std::filesystem::path tmp = temp_path(path);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw_io(path, "cannot write file", errno);

    auto fail = [&](int err, std::string_view what) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw_io(path, what, err);
    };
    while (!contents.empty()) {
        const ssize_t w = ::write(fd, contents.data(), contents.size());
        if (w < 0) {
            if (errno == EINTR) continue;
            fail(errno, "cannot write file");
        }
        contents.remove_prefix(size_t(w));
    }
    if (::fsync(fd) != 0) fail(errno, "cannot sync file");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw_io(path, "cannot write file", err);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw_io(path, "cannot replace file", err);
    }
    // Make the rename itself durable; best effort (some file systems refuse fsync on a dir).
    const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace moe
