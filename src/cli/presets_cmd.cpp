// `moe-sim presets [NAME]` (SPEC.md section 1): the bundled presets (config/presets.h), one line
// each, or one preset's text, to read or to copy and edit.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/help_text.h"
#include "config/config_error.h"
#include "config/presets.h"

namespace moe {

namespace {

int list_presets() {
    size_t width = 4;
    for (const Preset& p : bundled_presets()) width = std::max(width, p.name.size());
    std::string out;
    for (const Preset& p : bundled_presets())
        out += fmt::format("{:<{}}  {}\n", p.name, width, preset_summary(p));
    out +=
        "\nRun one with `moe-sim run presets/NAME` (any KEY=VALUE overrides work as for a file);\n"
        "print one with `moe-sim presets NAME`.\n";
    std::fputs(out.c_str(), stdout);
    return 0;
}

int show_preset(const std::string& name) {
    const Preset* p = find_preset(name);
    if (!p) {
        std::string names;
        for (const Preset& q : bundled_presets())
            names += fmt::format("{}{}", names.empty() ? "" : ", ", q.name);
        throw UserError(fmt::format("presets: no preset '{}'; the presets are: {}", name, names));
    }
    std::fwrite(p->text.data(), 1, p->text.size(), stdout);
    return 0;
}

}  // namespace

Command add_presets_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "presets",
        "List the bundled presets (one per routing system of the literature), or print one");
    auto name = std::make_shared<std::string>();
    cmd->add_option("NAME", *name, "Print this preset's config (to read it or copy and edit it)");
    cmd->footer(help_footer("the list (name and one line each), or one preset's YAML, on stdout.",
                            "moe-sim presets\n  moe-sim presets switch > my-switch.yaml\n"
                            "  moe-sim run presets/switch balance.alpha=0.001"));
    return Command{cmd,
                   [name]() -> int { return name->empty() ? list_presets() : show_preset(*name); }};
}

}  // namespace moe
