// The `sweep:` section of a config file (docs/sweeps.md), read with yaml-cpp here because config/
// is the only room that includes it. sweep/ turns what this returns into the list of runs.
//
//   sweep:
//     grid:                     # axes: every combination is a run (cartesian product)
//       experts.count: [8, 16]  # a dotted key ...
//       router:                 # ... or keys nested under their section
//         k: [1, 2]
//     variants:                 # explicit runs that are not a product: each entry is one set of
//       - {balance.alpha: 0.01, balance.bias_rate: 0}    # values; the grid is repeated for each
//       - {balance.alpha: 0, balance.bias_rate: 0.001}
//     seeds: [1, 2, 3]          # the `seed` axis, innermost
//
// Every key is checked against the schema (unknown key: the nearest valid one is suggested) and
// every value against its key's type and range, with file:line:column; an empty list, a key given
// twice or anything else in the section is an error too. Cross-key rules are checked per run by
// sweep/ (they depend on the combination).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config_error.h"

namespace moe {

// One value as written in the file: its text (a scalar as written, or a flow-style mapping for a
// whole section), and where it is.
struct SweepValue {
    std::string text;
    int line = 0, column = 0;  // 1-based
};

struct SweepFileAxis {
    std::string key;                 // dotted key path ("seed" for seeds)
    std::vector<SweepValue> values;  // at least one
    int line = 0, column = 0;        // where the key is written
};

struct SweepFileVariant {
    std::vector<std::pair<std::string, SweepValue>> settings;  // dotted key -> value, file order
    int line = 0, column = 0;
};

struct SweepSection {
    bool present = false;             // the file has a top-level `sweep:` key
    int line = 0, column = 0;         // where `sweep:` is
    std::vector<SweepFileAxis> grid;  // file order
    std::vector<SweepFileVariant> variants;
    bool has_seeds = false;
    SweepFileAxis seeds;  // key "seed"
};

struct SweepConfigFile {
    std::string label;      // the path (file name in diagnostics)
    std::string text;       // the file as read
    std::string base_text;  // the file without its sweep section; the section's lines are left
                            // empty so every other key keeps its line number
    SweepSection sweep;
};

// Reads a config file and parses its `sweep:` section (if any). Throws UserError with every
// problem of the section (file:line:column: key: message). Problems elsewhere in the file are
// left to the config loader (sweep/ loads base_text for every run).
SweepConfigFile sweep_config_load_file(const std::string& path);
// Same from text (tests); `label` is the file name used in diagnostics.
SweepConfigFile sweep_config_parse(const std::string& text, const std::string& label);

// "" when `key` is a config key or a section that an override can set; else the message
// ("unknown key (did you mean 'router.k'?)").
std::string sweep_key_problem(std::string_view key);

// Checks one value for one key on its own (type, range, choice; not the cross-key rules), as an
// override would. Returns one diagnostic per problem, located at `file` (line/column when known).
std::vector<Diagnostic> sweep_check_value(std::string_view key, std::string_view value,
                                          const std::string& file, int line = 0, int column = 0);

}  // namespace moe
