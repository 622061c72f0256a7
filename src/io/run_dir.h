// Run directories (SPEC.md section 3).
//
// prepare_run_dir(dir, force):
//   - dir missing: create it, with its parents.
//   - dir empty: use it.
//   - dir not empty, force false: UserError
//       run directory 'runs/x' exists and is not empty; use --force to overwrite it
//   - dir not empty, force true: remove the files a previous run wrote (config.yaml, every
//     *.csv, checkpoint.bin, and leftover temporaries of write_file_atomic) and keep everything else: a user's
//     notes or plots in the run directory survive --force. Sub-directories are never touched.
//   - dir is a file, or cannot be created or cleaned: UserError naming it and the reason.
#pragma once

#include <filesystem>

namespace moe {

// prepare_run_dir ignores the lock file (kRunLockName) when it decides whether dir is empty, and
// --force never removes it.
void prepare_run_dir(const std::filesystem::path& dir, bool force);

// The lock file of a run directory.
inline constexpr const char* kRunLockName = ".moe-sim.lock";

// An exclusive lock on a run directory for the life of a run: flock() on DIR/.moe-sim.lock,
// which holds the pid of its holder. The kernel releases it when the process exits, however it
// exits (kill -9 included); the file stays. Creates dir (with its parents) when it is missing.
// Throws UserError when another process holds it:
//   run directory 'runs/x' is in use by another moe-sim run (pid 1234); ...
class RunDirLock {
public:
    RunDirLock() = default;
    explicit RunDirLock(const std::filesystem::path& dir);
    ~RunDirLock();
    RunDirLock(RunDirLock&& other) noexcept;
    RunDirLock& operator=(RunDirLock&& other) noexcept;
    RunDirLock(const RunDirLock&) = delete;
    RunDirLock& operator=(const RunDirLock&) = delete;

private:
    int fd_ = -1;
};

// True for a file name that a run writes into its run directory (what --force removes).
bool is_run_output_name(const std::filesystem::path& filename);

}  // namespace moe
