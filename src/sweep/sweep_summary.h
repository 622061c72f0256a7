// The sweep directory's summary.csv (SPEC.md section 3): one row per run that has a summary.csv
// of its own (any status), in run-list order. Columns: `run` (the run directory name), one column
// per swept key (the value this run used, as `moe-sim validate` prints it), then the runs' own
// summary columns (their union in first-seen order; a run's own column that repeats a swept key
// is left out, it holds the same value). Rebuilt from the run directories every time, so it never
// holds a row twice, and written atomically.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sweep/sweep_plan.h"

namespace moe {

// RFC 4180 records of a CSV text (quoted fields unquoted). A last record cut short (no closing
// quote) is dropped.
std::vector<std::vector<std::string>> parse_csv(std::string_view text);

// A run's own summary.csv: its header and its (first) row; nullopt when missing or unreadable.
struct RunSummary {
    std::vector<std::string> header;
    std::vector<std::string> row;
    std::string status;  // the `status` column ("" when there is none)
};
std::optional<RunSummary> read_run_summary(const std::filesystem::path& run_dir);

struct SweepSummaryCounts {
    size_t rows = 0, completed = 0, diverged = 0, interrupted = 0, failed = 0, missing = 0;
};

// Rebuilds sweep_dir/summary.csv from every run of the plan. `failed` holds runs that failed
// without writing a summary.csv (run index -> status, e.g. "failed"): they get a row with that
// status and empty statistics.
SweepSummaryCounts write_sweep_summary(const SweepPlan& plan,
                                       const std::filesystem::path& sweep_dir,
                                       const std::map<size_t, std::string>& failed = {});

}  // namespace moe
