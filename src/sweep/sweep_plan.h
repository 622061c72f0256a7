// The run list of a sweep (docs/sweeps.md): axes from the command line (KEY=V1,V2,...) and from
// the config's `sweep:` section, expanded in a fixed order, named, validated, and split into
// shards.
//
// Order of the axes (first = outermost, varies slowest; the run name lists them in this order):
//   1. sweep.grid keys, in file order
//   2. command-line axes (KEY=V1,V2,...), in command-line order
//   3. sweep.variants (one axis whose values are whole sets of keys; its keys in first-seen order)
//   4. sweep.seeds (the `seed` axis), innermost
// The runs are the cartesian product grid x command line x variants x seeds. A command-line
// KEY=VALUE with one value is a fixed override for every run, not an axis.
//
// Errors (all collected, one line each, UserError -> exit 2): an unknown key (with the nearest
// valid one), an empty list or value, a key given twice (in any two places, a section and a key
// inside it included), a value its key refuses, the same value twice on one axis, two runs with
// the same values, more than kMaxRuns runs, and any run whose resolved config is invalid (a
// cross-key rule broken by one combination; the run is named).
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace moe {

inline constexpr size_t kMaxSweepRuns = 100000;

struct SweepAxis {
    std::string key;                  // dotted key path (or a section given whole)
    std::vector<std::string> values;  // override text
    std::string origin;               // where it was given, for messages
};

struct PlannedRun {
    size_t index = 0;  // position in the full run list (0-based)
    std::string name;  // the run directory name: key=value,key=value (filesystem-safe, unique)
    // The swept keys' values for this run, in swept_keys order: the resolved value as `moe-sim
    // validate` would print it (e.g. 0.01 for 1e-2), or the override text for a whole section.
    std::vector<std::string> swept_values;
    // Arguments KEY=VALUE for `moe-sim run`: the fixed overrides, then this run's swept values.
    std::vector<std::string> overrides;
    Config config;  // the resolved config (threads as in the file: the sweep sets it per run)
};

struct SweepPlan {
    std::string config_path;  // as given
    std::string base_text;    // the config file without its sweep section
    bool has_sweep_section = false;
    std::vector<std::string> fixed;  // KEY=VALUE for every run (command line, one value)
    std::vector<SweepAxis> axes;     // product axes in order (grid, then command line)
    // Variants: each one a list of (key, value); variant_keys is their union in first-seen order.
    std::vector<std::vector<std::pair<std::string, std::string>>> variants;
    std::vector<std::string> variant_keys;
    std::vector<std::string> seeds;       // empty: no seeds axis
    std::vector<std::string> swept_keys;  // every swept key, in axis order (summary columns)
    std::vector<PlannedRun> runs;         // the full list, in order
};

// Reads the config (and its sweep section), splits the command-line arguments into fixed
// overrides and axes, expands, names and validates every run. Throws UserError.
SweepPlan plan_sweep(const std::string& config_path, const std::vector<std::string>& args);
// Same with the config text given (tests); `label` names it in diagnostics.
SweepPlan plan_sweep_text(const std::string& config_text, const std::string& label,
                          const std::vector<std::string>& args);

// Splits "V1,V2,V3" at the commas that are not inside [], {} or quotes.
std::vector<std::string> split_axis_values(const std::string& text);

// A filesystem-safe directory name from "key=value,key=value": characters other than letters,
// digits and . _ - + = , become '_'; a name longer than 200 bytes is cut and ends with a hash of
// the whole name; "" becomes "run".
std::string safe_run_name(const std::string& name);

// Shards: "I/N" with 0 <= I < N (0-based, as SLURM_ARRAY_TASK_ID in an array 0..N-1).
// Run number r belongs to shard r mod N.
struct Shard {
    size_t index = 0;
    size_t count = 1;
    bool contains(size_t run_index) const { return run_index % count == index; }
};
Shard parse_shard(const std::string& text);  // throws UserError

}  // namespace moe
