// `moe-sim presets` (SPEC.md section 1): not built yet. Until it is, it says so plainly, like the
// other parts that are not built yet (device: cuda), with exit code 2.
#include "cli/commands.h"
#include "config/config_error.h"

namespace moe {

Command add_presets_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "presets", "List the bundled presets (not built yet in this version of moe-sim)");
    return Command{cmd, []() -> int {
                       throw UserError(
                           "presets: not built yet in this version of moe-sim; the configs/ "
                           "folder holds example configs to start from");
                   }};
}

}  // namespace moe
