// Loading a config: read the file, check the raw text, parse the YAML (load_yaml.cpp), apply the
// overrides (overrides.cpp), run the cross-key rules (validate.cpp), and throw every diagnostic
// at once. Also the diagnostics bookkeeping of LoadState.
#include "config/config_load.h"
#include "config/presets.h"

#include "config/load_internal.h"

#include <fmt/format.h>
#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace moe {
namespace detail {

void LoadState::error(const Source& at, std::string_view key, std::string message) {
    if (diagnostics_.size() >= kMaxDiagnostics) {
        ++suppressed_;
        return;
    }
    Diagnostic d{at.file, at.line, at.column, std::string(key), std::move(message)};
    diagnostics_.push_back(Entry{at, diagnostics_.size(), std::move(d)});
}

const Source* LoadState::given(std::string_view key) const {
    auto it = given_.find(key);
    return it == given_.end() ? nullptr : &it->second;
}

void LoadState::throw_if_errors() {
    if (diagnostics_.empty()) return;
    std::vector<Entry> sorted = diagnostics_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const Entry& a, const Entry& b) {
        auto rank = [](const Entry& e) {
            // Diagnostics without a line keep their arrival order after those with one.
            int line = e.at.line > 0 ? e.at.line : INT32_MAX;
            return std::tuple(int(e.at.group), e.at.order, line, e.at.column, e.arrival);
        };
        return rank(a) < rank(b);
    });
    std::vector<Diagnostic> out;
    for (Entry& e : sorted) out.push_back(std::move(e.d));
    if (suppressed_ > 0)
        out.push_back(Diagnostic{
            label,
            0,
            0,
            {},
            fmt::format("{} more error{} not shown", suppressed_, suppressed_ == 1 ? "" : "s")});
    throw UserError(std::move(out));
}

std::string shown(std::string_view text, size_t max) {
    std::string out;
    size_t n = text.size();
    bool cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80)
            --n;  // UTF-8 boundary
    }
    for (size_t i = 0; i < n; ++i) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\r')
            out += "\\r";
        else if (c < 0x20 || c == 0x7F)
            out += fmt::format("\\x{:02x}", c);
        else
            out += char(c);
    }
    if (cut) out += "...";
    return out;
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
size_t utf8_length(std::string_view s, size_t i) {
    auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
    auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
        return b(k) >= lo && b(k) <= hi;
    };
    unsigned c = b(0);
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
    if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
    return 0;
}

}  // namespace

bool check_text(LoadState& st, std::string_view text) {
    std::optional<TextProblem> p = find_text_problem(text);
    if (p) st.error(Source{st.label, p->line, p->column, Source::in_file}, {}, p->message);
    return !p;
}

std::optional<TextProblem> find_text_problem(std::string_view text) {
    auto fail = [](int line, int column, std::string message) {
        return std::optional<TextProblem>(TextProblem{line, column, std::move(message)});
    };
    if (text.size() > kConfigMaxBytes)
        return fail(0, 0,
                    fmt::format("config is too large: {} bytes, the limit is 16 MiB ({} bytes)",
                                text.size(), kConfigMaxBytes));
    int line = 1, column = 1;
    bool line_start = true;  // only spaces or tabs so far on this line
    bool in_comment = false;
    int flow_depth = 0;    // open [ and { (not inside comments; quotes are not tracked)
    int dashes = 0;        // block "- " indicators opening this line
    bool dash_run = true;  // still reading the line's leading "- - - " run
    int tab_column = 0;    // column of a tab in this line's indentation, if any
    for (size_t i = 0; i < text.size();) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == 0) return fail(line, column, "not a text file: it contains a NUL byte");
        size_t len = utf8_length(text, i);
        if (len == 0)
            return fail(line, column, fmt::format("not UTF-8 text: invalid byte 0x{:02X}", c));
        if (c == '\n') {
            ++line, column = 1, i += 1;
            line_start = true, in_comment = false, dashes = 0, dash_run = true, tab_column = 0;
            continue;
        }
        if (line_start && c == '\t' && tab_column == 0) tab_column = column;
        if (c != ' ' && c != '\t' && c != '\r') {
            if (line_start && tab_column > 0 && c != '#')
                return fail(line, tab_column,
                            "a tab in indentation: YAML indents with spaces only");
            line_start = false;
            if (c == '#' &&
                (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n'))
                in_comment = true;
            if (!in_comment) {
                bool dash =
                    c == '-' && (i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\n');
                if (dash && dash_run)
                    ++dashes;
                else
                    dash_run = false;
                if (c == '[' || c == '{') ++flow_depth;
                if ((c == ']' || c == '}') && flow_depth > 0) --flow_depth;
                if (flow_depth + dashes > kConfigMaxDepth)
                    return fail(line, column,
                                fmt::format("nesting is deeper than {} levels", kConfigMaxDepth));
            }
        }
        i += len;
        column += int(len);
    }
    return std::nullopt;
}

namespace {

[[noreturn]] void file_error(const std::string& path, std::string message) {
    throw UserError(std::vector<Diagnostic>{Diagnostic{path, 0, 0, {}, std::move(message)}});
}

std::string read_config_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) file_error(path, fmt::format("cannot open config file: {}", std::strerror(errno)));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat sb {};
    if (::fstat(fd, &sb) != 0)
        file_error(path, fmt::format("cannot open config file: {}", std::strerror(errno)));
    if (S_ISDIR(sb.st_mode))
        file_error(path, fmt::format("cannot open config file: {}", std::strerror(EISDIR)));
    auto too_large = [&](uint64_t bytes) {
        file_error(path,
                   fmt::format("config file is too large: {} bytes, the limit is 16 MiB ({} bytes)",
                               bytes, kConfigMaxBytes));
    };
    if (S_ISREG(sb.st_mode) && uint64_t(sb.st_size) > kConfigMaxBytes)
        too_large(uint64_t(sb.st_size));
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            file_error(path, fmt::format("cannot read config file: {}", std::strerror(errno)));
        }
        if (n == 0) break;
        text.append(buf, size_t(n));
        if (text.size() > kConfigMaxBytes) too_large(text.size());  // a pipe, or a file that grew
    }
    return text;
}

}  // namespace
}  // namespace detail

Config config_load_string(const std::string& yaml_text, const std::string& label,
                          const std::vector<std::string>& overrides) {
    detail::LoadState st(label, Config{});
    // A document that cannot be read at all stops here: its one diagnostic says why.
    if (!detail::check_text(st, yaml_text) || !detail::load_yaml_document(st, yaml_text))
        st.throw_if_errors();
    detail::apply_overrides(st, overrides);
    detail::validate_cross_keys(st);
    st.throw_if_errors();
    return st.cfg;
}

std::string config_read_source(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        if (const Preset* p = preset_for_path(path)) return std::string(p->text);
    return detail::read_config_file(path);
}

Config config_load_file(const std::string& path, const std::vector<std::string>& overrides) {
    return config_load_string(config_read_source(path), path, overrides);
}

Config config_apply_overrides(const Config& base, const std::vector<std::string>& overrides,
                              const std::string& label) {
    detail::LoadState st(label, base);
    detail::validate_each_key(st);
    detail::apply_overrides(st, overrides);
    detail::validate_cross_keys(st);
    st.throw_if_errors();
    return st.cfg;
}

void config_validate(const Config& cfg, const std::string& label) {
    detail::LoadState st(label, cfg);
    detail::validate_each_key(st);
    detail::validate_cross_keys(st);
    st.throw_if_errors();
}

}  // namespace moe
