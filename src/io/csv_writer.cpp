#include "io/csv_writer.h"

#include "io/io_error.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moe {

namespace {

[[noreturn]] void throw_io(const std::filesystem::path& path, std::string_view what, int err) {
    throw IoError(
        {Diagnostic{path.string(), 0, 0, {}, fmt::format("{}: {}", what, std::strerror(err))}});
}

std::string header_line(const std::vector<std::string>& header) {
    std::string line;
    for (size_t i = 0; i < header.size(); ++i) {
        if (i) line += ',';
        line += csv_quote(header[i]);
    }
    line += '\n';
    return line;
}

// Reads up to n bytes at offset; returns the bytes read.
std::string read_at(int fd, off_t offset, size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
        const ssize_t r = ::pread(fd, out.data() + got, n - got, offset + off_t(got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += size_t(r);
    }
    out.resize(got);
    return out;
}

}  // namespace

std::string csv_quote(std::string_view s) {
    if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
    return out;
}

CsvCell::CsvCell(double v) {
    if (!std::isnan(v)) text_ = fmt::format("{}", v);
}

CsvCell::CsvCell(float v) {
    if (!std::isnan(v)) text_ = fmt::format("{}", v);
}

CsvCell::CsvCell(std::string_view s) : text_(csv_quote(s)) {}

std::string CsvCell::format_integer(int64_t v) {
    return fmt::format("{}", v);
}
std::string CsvCell::format_unsigned(uint64_t v) {
    return fmt::format("{}", v);
}

CsvWriter::CsvWriter(const std::filesystem::path& path, std::vector<std::string> header,
                     CsvMode mode)
    : path_(path), header_(std::move(header)) {
    const std::string head = header_line(header_);
    int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC;
    if (mode == CsvMode::truncate) flags |= O_TRUNC;
    fd_ = ::open(path_.c_str(), flags, 0644);
    if (fd_ < 0) throw_io(path_, "cannot open CSV file for writing", errno);
    good_end_ = 0;

    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        const int err = errno;
        close_nothrow();
        throw_io(path_, "cannot stat CSV file", err);
    }
    if (st.st_size == 0) {
        buffer_ = head;
        flush();
        return;
    }
    // Append (resume): the header must match, and a trailing partial row is cut off.
    const std::string first = read_at(fd_, 0, head.size());
    if (first != head) {
        close_nothrow();
        throw UserError({Diagnostic{
            path_.string(),
            0,
            0,
            {},
            fmt::format("cannot append: its header differs from this version's header '{}'",
                        head.substr(0, head.size() - 1))}});
    }
    off_t end = st.st_size;
    constexpr off_t kBlock = 65536;
    while (end > 0) {
        const off_t begin = end > kBlock ? end - kBlock : 0;
        const std::string block = read_at(fd_, begin, size_t(end - begin));
        const size_t nl = block.rfind('\n');
        if (nl != std::string::npos) {
            end = begin + off_t(nl) + 1;
            break;
        }
        end = begin;
    }
    if (end != st.st_size && ::ftruncate(fd_, end) != 0) {
        const int err = errno;
        close_nothrow();
        throw_io(path_, "cannot cut the partial last row", err);
    }
    good_end_ = int64_t(end);
}

CsvWriter::~CsvWriter() {
    if (fd_ < 0) return;
    try {
        flush();
    } catch (...) {
        // A destructor cannot report; close() is the checked path.
    }
    close_nothrow();
}

CsvWriter::CsvWriter(CsvWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      header_(std::move(other.header_)),
      buffer_(std::move(other.buffer_)),
      rows_(std::exchange(other.rows_, 0)),
      good_end_(std::exchange(other.good_end_, 0)) {}

CsvWriter& CsvWriter::operator=(CsvWriter&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) {
            try {
                flush();
            } catch (...) {
            }
            close_nothrow();
        }
        fd_ = std::exchange(other.fd_, -1);
        path_ = std::move(other.path_);
        header_ = std::move(other.header_);
        buffer_ = std::move(other.buffer_);
        rows_ = std::exchange(other.rows_, 0);
        good_end_ = std::exchange(other.good_end_, 0);
    }
    return *this;
}

void CsvWriter::write_row(std::span<const CsvCell> cells) {
    if (cells.size() != header_.size())
        throw std::logic_error(fmt::format("{}: row with {} cells, header has {} columns",
                                           path_.string(), cells.size(), header_.size()));
    for (size_t i = 0; i < cells.size(); ++i) {
        if (i) buffer_ += ',';
        buffer_ += cells[i].text();
    }
    buffer_ += '\n';
    ++rows_;
}

void CsvWriter::write_all(std::string_view bytes) {
    // One write() for the whole buffer; the loop only continues after a short write (a signal
    // or a full disk), which a regular file does not do otherwise.
    while (!bytes.empty()) {
        const ssize_t w = ::write(fd_, bytes.data(), bytes.size());
        if (w < 0) {
            if (errno == EINTR) continue;
            fail_write(errno);
        }
        bytes.remove_prefix(size_t(w));
    }
}

void CsvWriter::fail_write(int err) {
    // The kernel may have taken part of the buffer (a full disk, a file size limit): cut the
    // file back to the end of the last whole row, so a reader or --resume never meets half a
    // row. The buffered rows are dropped and the writer closed: nothing more is written, the
    // destructor included. A file that cannot be cut (a device) is left as it is.
    buffer_.clear();
    const bool cut = ::ftruncate(fd_, off_t(good_end_)) == 0;
    close_nothrow();
    throw_io(
        path_,
        cut ? "cannot write CSV file (cut back to its last whole row)" : "cannot write CSV file",
        err);
}

void CsvWriter::flush() {
    if (fd_ < 0 || buffer_.empty()) return;
    write_all(buffer_);
    good_end_ += int64_t(buffer_.size());
    buffer_.clear();
}

void CsvWriter::close() {
    if (fd_ < 0) return;
    flush();
    if (::fsync(fd_) != 0) {
        const int err = errno;
        close_nothrow();
        throw_io(path_, "cannot sync CSV file", err);
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) throw_io(path_, "cannot close CSV file", errno);
}

void CsvWriter::close_nothrow() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

}  // namespace moe
