#include "cli/commands.h"

namespace moe {

void add_extra_commands(CLI::App& app, std::vector<Command>& out) {
    // One line per subcommand file, e.g. out.push_back(add_sweep_command(app));
    out.push_back(add_bench_command(app));
    out.push_back(add_sweep_command(app));
    out.push_back(add_presets_command(app));
}

CLI::Validator out_dir_validator(const std::string& default_dir) {
    return CLI::Validator(
        [default_dir](const std::string& s) {
            if (s.empty())
                return "an empty path; give a directory, or leave --out out for " + default_dir;
            if (s[0] == '-')
                return "'" + s + "' looks like an option, not a directory; write ./" + s +
                       " for a directory of that name";
            return std::string();
        },
        "");
}

}  // namespace moe
