// Atomic file replacement (SPEC.md section 3: summary.csv and config.yaml).
//
// write_file_atomic(path, contents) writes contents to a temporary file in the same directory
// (".<name>.tmp-<pid>-<n>", n counting calls, so threads never share one), fsyncs it, renames
// it over path and fsyncs the directory, so readers and a crash see either the old file or the
// whole new one, never a part. On failure the
// temporary file is removed and an IoError (io/io_error.h) names the path and the system's reason
// (strerror), e.g.  runs/x/summary.csv: cannot write file: No space left on device
#pragma once

#include <filesystem>
#include <string_view>

namespace moe {

void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

// True for a temporary name of write_file_atomic (".<name>.tmp-<digits>-<digits>"): a leftover
// of a killed process, which prepare_run_dir(force) removes.
bool is_atomic_temp_name(std::string_view filename);

// Removes the temporary files of write_file_atomic left in dir (not below it) by a process that
// was killed mid-write; returns how many. Only for a directory no other process writes (a run
// directory under its lock). Errors are ignored: a leftover is harmless, only untidy.
int remove_atomic_temps(const std::filesystem::path& dir);

}  // namespace moe
