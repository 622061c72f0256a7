// Interrupting a task's data setup (generating a large data set, calibrating thousands of
// teachers can take minutes). The CLI hands its SIGINT/SIGTERM flag here; setup loops call
// setup_stop_requested() every few milliseconds of work and, once it is true, finish no more
// work and throw SetupInterrupted, which `moe-sim run` turns into exit code 130.
// Setup runs before the training loop writes anything, so nothing is half-written.
#pragma once

#include <atomic>
#include <stdexcept>

namespace moe {

class SetupInterrupted : public std::runtime_error {
public:
    SetupInterrupted() : std::runtime_error("interrupted during data setup") {}
};

// The flag that a signal sets (nullptr: setup is never interrupted). Process-wide.
void set_setup_stop_flag(const std::atomic<bool>* flag);

// True once the flag is set. Cheap (one atomic load); safe from any thread.
bool setup_stop_requested();

// Throws SetupInterrupted when setup_stop_requested().
void throw_if_setup_stopped();

}  // namespace moe
