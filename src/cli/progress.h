// Progress display on stderr (SPEC.md section 1): one updating line when stderr is a terminal,
// plain lines at evaluations and at most every few seconds otherwise, nothing with --quiet.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "train/trainer.h"

namespace moe {

// Time left from the recent rate of steps, not from the mean since the start: the first step
// (allocation, page faults, thread start-up) can take as long as hundreds of later ones, and a
// mean over it gives a 3.6 h ETA for a 12 s run.
//
// add() records (step, elapsed seconds) at each progress update. The rate is the steps per second
// between the oldest and the newest kept sample; samples older than the window are dropped (the
// newest older one is kept as the baseline, so the rate spans at least the window once the run
// is that long). The first sample's own time, the slow first steps, never enters the rate: it
// is a baseline only. eta_s() is empty until the kept samples span at least min_span_s seconds
// and min_updates updates after the baseline: "?" rather than a guess.
class EtaEstimator {
public:
    explicit EtaEstimator(double window_s = 30.0, double min_span_s = 1.0, int min_updates = 2)
        : window_s_(window_s), min_span_s_(min_span_s), min_updates_(min_updates) {}

    void add(int64_t step, double elapsed_s);
    // Seconds left to reach `steps`; empty while there is too little data.
    std::optional<double> eta_s(int64_t steps) const;

private:
    struct Sample {
        int64_t step;
        double t;
    };
    double window_s_, min_span_s_;
    int min_updates_;
    std::deque<Sample> samples_;
};

// "?" when unknown, else 42s, 3.5m or 1.2h.
std::string eta_text(std::optional<double> eta_s);

class ProgressDisplay {
public:
    explicit ProgressDisplay(bool quiet);
    void update(const Progress& p);
    void finish();

private:
    bool quiet_, tty_;
    double last_print_ = -1e9;
    bool line_open_ = false;
    EtaEstimator eta_;
};

}  // namespace moe
