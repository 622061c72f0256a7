// Progress display on stderr (SPEC.md section 1): one updating line when stderr is a terminal,
// plain lines at evaluations and at most every few seconds otherwise, nothing with --quiet.
#pragma once

#include "train/trainer.h"

namespace moe {

class ProgressDisplay {
public:
    explicit ProgressDisplay(bool quiet);
    void update(const Progress& p);
    void finish();

private:
    bool quiet_, tty_;
    double last_print_ = -1e9;
    bool line_open_ = false;
};

}  // namespace moe
