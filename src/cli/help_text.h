// The footers of `moe-sim --help` and `moe-sim SUBCOMMAND --help`: where the output goes, one
// example, and the exit codes (README "Commands"), so that --help answers more than the options.
#pragma once

#include <string>

namespace moe {

// The exit codes as README states them, one paragraph (the same in every footer).
inline const char* exit_codes_help() {
    return "Exit codes:\n"
           "  0    success\n"
           "  1    the run failed: it diverged, or a file could not be written (a full disk, a\n"
           "       read-only directory, a path under a file); sweep: not every run completed\n"
           "  2    bad usage or a bad config (every error is printed, one line each)\n"
           "  130  interrupted (SIGINT or SIGTERM) after flushing every file\n";
}

// "Output: ...\n\nExample:\n  ...\n\n<exit codes>"
inline std::string help_footer(const std::string& output, const std::string& example) {
    return "\nOutput: " + output + "\n\nExample:\n  " + example + "\n\n" + exit_codes_help();
}

}  // namespace moe
