#include "io/run_dir.h"

#include "config/config_error.h"
#include "io/atomic_file.h"

#include <fmt/format.h>

#include <system_error>
#include <vector>

namespace moe {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& dir, std::string_view what, const std::error_code& ec) {
    throw UserError(fmt::format("run directory '{}': {}: {}", dir.string(), what, ec.message()));
}

}  // namespace

bool is_run_output_name(const fs::path& filename) {
    const std::string name = filename.string();
    return name == "config.yaml" || (filename.extension() == ".csv" && name != ".csv") ||
           is_atomic_temp_name(name);
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
        throw UserError(fmt::format("run directory '{}' exists and is not a directory",
                                    dir.string()));

    const bool empty = fs::is_empty(dir, ec);
    if (ec) fail(dir, "cannot read it", ec);
    if (empty) return;
    if (!force)
        throw UserError(fmt::format(
            "run directory '{}' exists and is not empty; use --force to overwrite it",
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

}  // namespace moe
