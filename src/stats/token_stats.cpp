#include "stats/token_stats.h"

#include "stats/load_stats.h"

#include "backend/check.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace moe {

TokenWindow::TokenWindow(int N, int V, int P)
    : N_(N),
      V_(V),
      P_(P),
      token_expert_(size_t(V) * size_t(N), 0),
      position_expert_(size_t(P) * size_t(N), 0),
      pos_tokens_(size_t(P), 0),
      pos_processed_(size_t(P), 0),
      pos_dropped_(size_t(P), 0) {
    MOESIM_CHECK(N >= 0 && V >= 0 && P >= 0, "statistics invariant");
}

void TokenWindow::reset() {
    std::fill(token_expert_.begin(), token_expert_.end(), 0);
    std::fill(position_expert_.begin(), position_expert_.end(), 0);
    std::fill(pos_tokens_.begin(), pos_tokens_.end(), 0);
    std::fill(pos_processed_.begin(), pos_processed_.end(), 0);
    std::fill(pos_dropped_.begin(), pos_dropped_.end(), 0);
    dense_ = false;
    tokens_ = slots_ = 0;
}

void TokenWindow::observe(const RoutingPlan& plan, const int* top1, const int* tokens,
                          const int* positions) {
    MOESIM_CHECK(plan.N == N_, "a plan of another expert count");
    const int T = plan.T;
    for (int i = 0; i < N_; ++i) slots_ += plan.routed[size_t(i)];
    tokens_ += T;
    if (plan.kind == PlanKind::dense) dense_ = true;
    for (int t = 0; t < T; ++t) {
        const int v = tokens[t], s = positions[t], e = top1[t];
        MOESIM_CHECK(v >= 0 && v < V_ && s >= 0 && s < P_ && e >= 0 && e < N_,
                     "a token id, position or expert out of range");
        ++token_expert_[size_t(v) * size_t(N_) + size_t(e)];
        ++position_expert_[size_t(s) * size_t(N_) + size_t(e)];
        ++pos_tokens_[size_t(s)];
        if (plan.kind == PlanKind::sparse) {
            const int a = plan.token_assignments(t);
            pos_processed_[size_t(s)] += a;
            if (a == 0) ++pos_dropped_[size_t(s)];
        }
    }
}

int64_t TokenWindow::token_count(int v) const {
    MOESIM_CHECK(v >= 0 && v < V_, "a token id out of range");
    const auto row = token_expert_.begin() + ptrdiff_t(size_t(v) * size_t(N_));
    return std::accumulate(row, row + N_, int64_t{0});
}

double TokenWindow::spec_nmi_token() const {
    return spec_nmi(token_expert_, V_, N_);  // NaN when the table is empty
}

std::vector<PositionStats> TokenWindow::positions() const {
    constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    std::vector<PositionStats> out;
    const double r = tokens_ > 0 ? double(slots_) / double(tokens_) : kNaN;
    for (int s = 0; s < P_; ++s) {
        const int64_t n = pos_tokens_[size_t(s)];
        if (n == 0) continue;
        PositionStats p;
        p.position = s;
        p.tokens = n;
        if (dense_) {
            p.has_processed = false;
            p.drop_rate = p.dropped_token_rate = 0.0;
        } else {
            p.processed = pos_processed_[size_t(s)];
            p.dropped_tokens = pos_dropped_[size_t(s)];
            p.drop_rate = r > 0.0 ? 1.0 - double(p.processed) / (r * double(n)) : kNaN;
            p.dropped_token_rate = double(p.dropped_tokens) / double(n);
        }
        out.push_back(p);
    }
    return out;
}

std::vector<int> reported_tokens(std::span<const int> tokens, int V, int limit) {
    MOESIM_CHECK(V >= 0 && limit >= 0, "statistics invariant");
    std::vector<int64_t> count(size_t(V), 0);
    for (int v : tokens) {
        MOESIM_CHECK(v >= 0 && v < V, "a token id out of range");
        ++count[size_t(v)];
    }
    std::vector<int> ids;
    for (int v = 0; v < V; ++v)
        if (count[size_t(v)] > 0) ids.push_back(v);
    if (int(ids.size()) > limit) {
        std::stable_sort(ids.begin(), ids.end(),
                         [&count](int a, int b) { return count[size_t(a)] > count[size_t(b)]; });
        ids.resize(size_t(limit));
        std::sort(ids.begin(), ids.end());
    }
    return ids;
}

}  // namespace moe
