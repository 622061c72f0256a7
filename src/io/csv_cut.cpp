#include "io/csv_cut.h"

#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include "config/config_error.h"
#include "io/atomic_file.h"

namespace moe {

int64_t csv_cut_after_step(const std::filesystem::path& path, int64_t step) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(path.string() + ": cannot read file");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    std::string out;
    out.reserve(text.size());
    int64_t removed = 0;
    size_t pos = 0;
    bool header = true;
    while (pos < text.size()) {
        const size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) {  // a torn last row: no line end
            ++removed;
            break;
        }
        const std::string_view line(text.data() + pos, nl - pos);
        pos = nl + 1;
        if (header) {
            out.append(line).push_back('\n');
            header = false;
            continue;
        }
        const std::string_view first = line.substr(0, line.find(','));
        int64_t s = 0;
        const auto [end, err] = std::from_chars(first.data(), first.data() + first.size(), s);
        if (err != std::errc() || end != first.data() + first.size())
            throw UserError(path.string() + ": a row whose first field is not a step: '" +
                            std::string(first) + "'");
        if (s > step) {
            ++removed;
            continue;
        }
        out.append(line).push_back('\n');
    }
    if (out.size() != text.size()) write_file_atomic(path, out);
    return removed;
}

}  // namespace moe
