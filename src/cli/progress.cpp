#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace moe {

ProgressDisplay::ProgressDisplay(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {}

void EtaEstimator::add(int64_t step, double elapsed_s) {
    if (!samples_.empty() && step <= samples_.back().step) return;  // an eval row of the same step
    samples_.push_back({step, elapsed_s});
    while (samples_.size() > 2 && elapsed_s - samples_[1].t >= window_s_) samples_.pop_front();
}

std::optional<double> EtaEstimator::eta_s(int64_t steps) const {
    if (samples_.size() < size_t(min_updates_) + 1 || samples_.size() < 2) return std::nullopt;
    const Sample& a = samples_.front();
    const Sample& b = samples_.back();
    const double span = b.t - a.t;
    if (span < min_span_s_ || span <= 0 || b.step <= a.step) return std::nullopt;
    const double rate = double(b.step - a.step) / span;
    return double(std::max<int64_t>(0, steps - b.step)) / rate;
}

std::string eta_text(std::optional<double> eta) {
    if (!eta) return "?";
    if (*eta >= 3600) return fmt::format("{:.1f}h", *eta / 3600);
    if (*eta >= 60) return fmt::format("{:.1f}m", *eta / 60);
    return fmt::format("{:.0f}s", *eta);
}

void ProgressDisplay::update(const Progress& p) {
    if (quiet_) return;
    eta_.add(p.step, p.elapsed_s);
    std::string line;
    if (p.eval) {
        line = fmt::format("step {}/{}  eval loss {:.4f}  accuracy {:.3f}", p.step, p.steps, p.loss,
                           p.accuracy);
    } else {
        line = fmt::format(
            "step {}/{}  loss {:.4f}  drop {:.3f}  max_vio {:.3f}  {:.0f} tok/s  ETA {}", p.step,
            p.steps, p.loss, p.drop_rate, p.max_vio, p.tokens_per_s, eta_text(eta_.eta_s(p.steps)));
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
