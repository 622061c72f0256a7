// Subcommands beyond run and validate, one file each (sweep_cmd.cpp, bench_cmd.cpp, ...).
// Each add_*_command() adds its CLI11 subcommand to the app and returns how to run it; cli.cpp
// runs the one that was parsed and turns a UserError into "moe-sim: error: ..." and exit code 2.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace moe {

struct Command {
    CLI::App* app = nullptr;
    std::function<int()> run;  // returns the exit code
};

// Adds every extra subcommand (commands.cpp lists them).
void add_extra_commands(CLI::App& app, std::vector<Command>& out);

Command add_bench_command(CLI::App& app);    // bench_cmd.cpp
Command add_sweep_command(CLI::App& app);    // sweep_cmd.cpp
Command add_presets_command(CLI::App& app);  // presets_cmd.cpp

// The check of an --out DIR option (commands.cpp): "" is a mistake (an unset variable), not the
// default; so is `--out= --quiet`, which CLI11 reads as the directory "--quiet".
// default_dir names the default in the message.
CLI::Validator out_dir_validator(const std::string& default_dir);

}  // namespace moe
