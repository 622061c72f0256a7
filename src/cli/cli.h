// The command line: subcommands, argument parsing, error reporting (the only user of CLI11).
#pragma once

namespace moe {

// Runs moe-sim with the given arguments and returns the process exit code:
// 0 success, 1 the run failed (diverged, I/O error), 2 bad usage or bad config, 130 interrupted.
int cli_main(int argc, char** argv);

}  // namespace moe
