// Append-only CSV files (SPEC.md section 3): a fixed header, then whole rows.
//
// Format: RFC 4180 fields: a field holding a comma, a double quote, CR or LF is written inside
// double quotes with its quotes doubled (a"b -> "a""b"); every other field is written as is.
// Lines end with LF (what pandas, R and the Unix tools write and read).
// Numbers: fmt "{}", the shortest text that parses back (strtod / strtof) to the same value;
// integers in decimal. NaN and an empty std::optional are an empty cell (undefined statistic);
// +-inf print as inf / -inf.
//
// Whole rows only: write_row() appends the row to a memory buffer; flush() hands every buffered
// row to the kernel in one write() call, so a killed process leaves the file ending at a row
// boundary (the kernel can cut a very large write short when SIGKILL lands inside it; opening
// with CsvMode::append then drops the partial last row). When a write fails (a full disk: ENOSPC,
// a file size limit: EFBIG) after the kernel took part of the buffer, the file is cut back
// (ftruncate) to the end of its last whole row, the buffered rows are dropped, the writer is
// closed and an IoError names the path and the reason. close() flushes and fsyncs; the
// destructor flushes and closes, ignoring errors (call close() to see them).
//
//   CsvWriter w("runs/x/layers.csv", {"step", "split", "layer", "max_vio"});
//   w.write_row({100, "train", 0, stats.max_vio});
//   w.flush();  // at every log step
#pragma once

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace moe {

// One formatted CSV field.
class CsvCell {
public:
    CsvCell() = default;  // an empty cell
    CsvCell(double v);
    CsvCell(float v);
    template <std::integral I>
    CsvCell(I v)
        : text_(std::is_signed_v<I> ? format_integer(int64_t(v)) : format_unsigned(uint64_t(v))) {}
    CsvCell(bool v) : text_(v ? "true" : "false") {}
    CsvCell(std::string_view s);
    CsvCell(const char* s) : CsvCell(std::string_view(s)) {}
    CsvCell(const std::string& s) : CsvCell(std::string_view(s)) {}
    template <typename T>
    CsvCell(const std::optional<T>& v) : CsvCell(v ? CsvCell(*v) : CsvCell()) {}

    const std::string& text() const { return text_; }  // as written, quotes included

private:
    static std::string format_integer(int64_t v);
    static std::string format_unsigned(uint64_t v);
    std::string text_;
};

// The RFC 4180 form of a string field (quoted only when it must be).
std::string csv_quote(std::string_view s);

enum class CsvMode {
    truncate,  // create or empty the file, then write the header
    append,    // keep an existing file whose header matches and add rows after its last
               // complete row (--resume); create it with the header when it does not exist
};

class CsvWriter {
public:
    CsvWriter() = default;
    // Opens path and (mode truncate, or a new file) writes the header at once.
    // Throws IoError (a UserError) naming the path when the file cannot be opened or written,
    // UserError (append) when its header differs from `header`.
    CsvWriter(const std::filesystem::path& path, std::vector<std::string> header,
              CsvMode mode = CsvMode::truncate);
    ~CsvWriter();
    CsvWriter(CsvWriter&& other) noexcept;
    CsvWriter& operator=(CsvWriter&& other) noexcept;
    CsvWriter(const CsvWriter&) = delete;
    CsvWriter& operator=(const CsvWriter&) = delete;

    // Buffers one row; it must have exactly header().size() cells (std::logic_error otherwise).
    void write_row(std::span<const CsvCell> cells);
    void write_row(std::initializer_list<CsvCell> cells) {
        write_row(std::span<const CsvCell>(cells.begin(), cells.size()));
    }

    // Writes every buffered row with one write(). On failure: the file is cut back to its last
    // whole row, the writer is closed (is_open() false) and IoError is thrown.
    void flush();
    void close();  // flush, fsync, close; the writer is then closed (is_open() false)

    bool is_open() const { return fd_ >= 0; }
    const std::vector<std::string>& header() const { return header_; }
    const std::filesystem::path& path() const { return path_; }
    int64_t rows_written() const { return rows_; }  // rows passed to write_row() since open

private:
    void write_all(std::string_view bytes);
    [[noreturn]] void fail_write(int err);
    void close_nothrow() noexcept;

    int fd_ = -1;
    std::filesystem::path path_;
    std::vector<std::string> header_;
    std::string buffer_;  // whole rows not yet written
    int64_t rows_ = 0;
    int64_t good_end_ = 0;  // file size at the end of the last whole row written
};

}  // namespace moe
