#include "config/config_error.h"

#include <fmt/format.h>

namespace moe {

std::string Diagnostic::format() const {
    std::string out;
    if (!file.empty()) {
        if (line > 0 && column > 0)
            out += fmt::format("{}:{}:{}: ", file, line, column);
        else if (line > 0)
            out += fmt::format("{}:{}: ", file, line);
        else
            out += fmt::format("{}: ", file);
    }
    if (!key.empty()) out += key + ": ";
    out += message;
    return out;
}

static std::string join_lines(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (size_t i = 0; i < ds.size(); ++i) {
        if (i) out += "\n";
        out += ds[i].format();
    }
    return out;
}

UserError::UserError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(join_lines(diagnostics)), diagnostics_(std::move(diagnostics)) {}

UserError::UserError(const std::string& message)
    : std::runtime_error(message), diagnostics_{Diagnostic{{}, 0, 0, {}, message}} {}

}  // namespace moe
