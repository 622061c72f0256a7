// Run directories (SPEC.md section 3).
//
// prepare_run_dir(dir, force):
//   - dir missing: create it, with its parents.
//   - dir empty: use it.
//   - dir not empty, force false: UserError
//       run directory 'runs/x' exists and is not empty; use --force to overwrite it
//   - dir not empty, force true: remove the files a previous run wrote (config.yaml, every
//     *.csv, and leftover temporaries of write_file_atomic) and keep everything else: a user's
//     notes or plots in the run directory survive --force. Sub-directories are never touched.
//   - dir is a file, or cannot be created or cleaned: UserError naming it and the reason.
#pragma once

#include <filesystem>

namespace moe {

void prepare_run_dir(const std::filesystem::path& dir, bool force);

// True for a file name that a run writes into its run directory (what --force removes).
bool is_run_output_name(const std::filesystem::path& filename);

}  // namespace moe
