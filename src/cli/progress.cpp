#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace moe {

ProgressDisplay::ProgressDisplay(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {}

static std::string eta_text(const Progress& p) {
    if (p.step <= 0) return "?";
    const double eta = p.elapsed_s * double(p.steps - p.step) / double(p.step);
    if (eta >= 3600) return fmt::format("{:.1f}h", eta / 3600);
    if (eta >= 60) return fmt::format("{:.1f}m", eta / 60);
    return fmt::format("{:.0f}s", eta);
}

void ProgressDisplay::update(const Progress& p) {
    if (quiet_) return;
    std::string line;
    if (p.eval) {
        line = fmt::format("step {}/{}  eval loss {:.4f}  accuracy {:.3f}", p.step, p.steps, p.loss,
                           p.accuracy);
    } else {
        line = fmt::format("step {}/{}  loss {:.4f}  drop {:.3f}  max_vio {:.3f}  {:.0f} tok/s  ETA {}",
                           p.step, p.steps, p.loss, p.drop_rate, p.max_vio, p.tokens_per_s,
                           eta_text(p));
    }
    if (tty_) {
        if (p.eval) {
            std::fprintf(stderr, "\r\033[K%s\n", line.c_str());
            line_open_ = false;
        } else {
            std::fprintf(stderr, "\r\033[K%s", line.c_str());
            line_open_ = true;
        }
        std::fflush(stderr);
        return;
    }
    if (p.eval || p.elapsed_s - last_print_ >= 5.0) {
        std::fprintf(stderr, "%s\n", line.c_str());
        last_print_ = p.elapsed_s;
    }
}

void ProgressDisplay::finish() {
    if (line_open_) std::fprintf(stderr, "\n");
    line_open_ = false;
}

}  // namespace moe
