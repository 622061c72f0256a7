#include "cli/commands.h"

namespace moe {

void add_extra_commands(CLI::App& app, std::vector<Command>& out) {
    // One line per subcommand file, e.g. out.push_back(add_sweep_command(app));
    out.push_back(add_bench_command(app));
    out.push_back(add_sweep_command(app));
    out.push_back(add_presets_command(app));
}

}  // namespace moe
