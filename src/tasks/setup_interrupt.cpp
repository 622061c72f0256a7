#include "tasks/setup_interrupt.h"

namespace moe {

namespace {
std::atomic<const std::atomic<bool>*> g_flag{nullptr};
}  // namespace

void set_setup_stop_flag(const std::atomic<bool>* flag) {
    g_flag.store(flag);
}

bool setup_stop_requested() {
    const std::atomic<bool>* f = g_flag.load(std::memory_order_relaxed);
    return f != nullptr && f->load(std::memory_order_relaxed);
}

void throw_if_setup_stopped() {
    if (setup_stop_requested()) throw SetupInterrupted();
}

}  // namespace moe
