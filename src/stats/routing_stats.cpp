#include "stats/routing_stats.h"

#include "stats/load_stats.h"

#include "backend/check.h"
#include "backend/routing_host.h"
#include "backend/vec_math.h"

#include <algorithm>
#include <cmath>

namespace moe {

std::array<double, kLayerStatColumns.size()> layer_stat_values(const LayerStats& s) {
    return {s.max_vio,
            s.load_cv,
            s.load_entropy,
            s.effective_experts,
            s.gini,
            double(s.dead_experts),
            s.min_load,
            s.max_load,
            s.drop_rate,
            s.dropped_token_rate,
            s.router_entropy,
            s.top1_prob,
            s.flip_rate,
            s.spec_nmi,
            s.dispatch_entropy,
            s.spec_purity,
            s.aux_loss,
            s.z_loss,
            s.logit_lse2,
            s.router_grad_task,
            s.router_grad_aux,
            s.router_grad_cos};
}

LayerWindow::LayerWindow(int N, int max_groups)
    : N_(N),
      max_groups_(max_groups),
      counts_(Backend::WindowSummary::counts_size(N, max_groups), 0),
      sums_(Backend::WindowSummary::sums_size(N), 0.0),
      mass_(size_t(N), 0.0) {
    MOESIM_CHECK(N >= 0 && max_groups >= 0, "statistics invariant");
}

void LayerWindow::reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    std::fill(sums_.begin(), sums_.end(), 0.0);
    std::fill(mass_.begin(), mass_.end(), 0.0);
    weighted_ = false;
}

void LayerWindow::observe(const RoutingPlan& plan, const float* probs, const float* logits,
                          const int* groups, int num_groups, double aux_loss, double z_loss) {
    MOESIM_CHECK(plan.N == N_, "a plan of another expert count");
    // The counts, the probabilities' and logits' sums, the group table: the CPU backend's
    // window_observe (one copy of the arithmetic).
    host_window_observe(counts_.data(), sums_.data(), nullptr, plan.routed.data(),
                        plan.dropped.data(),
                        plan.kind == PlanKind::sparse ? plan.tok_offsets.data() : nullptr, probs,
                        logits, groups, num_groups, aux_loss, z_loss, plan.T, N_, max_groups_);
    if (plan.weighted) {
        weighted_ = true;
        for (int i = 0; i < N_; ++i) mass_[size_t(i)] += plan.mass[size_t(i)];
    }
}

void LayerWindow::set_summary(std::span<const int64_t> counts, std::span<const double> sums) {
    using W = Backend::WindowSummary;
    MOESIM_CHECK(counts.size() == counts_.size() && sums.size() == sums_.size(),
                 "a window summary of another shape");
    const int64_t groups = counts[W::count(N_, max_groups_, W::num_groups)];
    MOESIM_CHECK(groups >= 0 && groups <= max_groups_, "more groups than sized for");
    std::copy(counts.begin(), counts.end(), counts_.begin());
    std::copy(sums.begin(), sums.end(), sums_.begin());
    std::fill(mass_.begin(), mass_.end(), 0.0);
    weighted_ = false;
}

LayerStats LayerWindow::finish() const {
    using W = Backend::WindowSummary;
    constexpr double kNaN = LayerStats::kNaN;
    LayerStats s;
    const int64_t tokens = count(W::tokens), slots = count(W::slots);
    const int64_t prob_tokens = count(W::prob_tokens), logit_tokens = count(W::logit_tokens);
    const int64_t batches = count(W::batches);
    const int num_groups = int(count(W::num_groups));
    const std::span<const int64_t> routed(counts_.data() + W::routed(N_), size_t(N_));
    const int64_t* dropped = counts_.data() + W::dropped(N_);
    const double* importance = sums_.data();
    s.num_tokens = tokens;
    s.num_batches = batches;

    const LoadStats ls = weighted_ ? load_stats_weighted(mass_) : load_stats(routed);
    s.max_vio = ls.max_vio;
    s.load_cv = ls.load_cv;
    s.load_entropy = ls.load_entropy;
    s.effective_experts = ls.effective_experts;
    s.gini = ls.gini;
    s.dead_experts = ls.dead_experts;
    s.min_load = ls.min_load;
    s.max_load = ls.max_load;

    int64_t routed_total = 0, dropped_total = 0;
    double mass_total = 0.0;
    for (int i = 0; i < N_; ++i) {
        routed_total += routed[size_t(i)];
        dropped_total += dropped[i];
        mass_total += mass_[size_t(i)];
    }
    s.drop_rate = slots > 0 ? double(dropped_total) / double(slots) : kNaN;
    s.dropped_token_rate = tokens > 0 ? double(count(W::dropped_tokens)) / double(tokens) : kNaN;

    if (prob_tokens > 0) {
        const double mean_h = sum(W::entropy) / double(prob_tokens);
        s.router_entropy = N_ == 1 ? 1.0 : mean_h / std::log(double(N_));
        s.top1_prob = sum(W::top1) / double(prob_tokens);
    }
    if (logit_tokens > 0) s.logit_lse2 = sum(W::lse2) / double(logit_tokens);
    if (batches > 0) {
        s.aux_loss = sum(W::aux) / double(batches);
        s.z_loss = sum(W::z) / double(batches);
    }

    s.experts.resize(size_t(N_));
    for (int i = 0; i < N_; ++i) {
        ExpertStats& e = s.experts[size_t(i)];
        e.tokens = routed[size_t(i)];
        e.dropped = dropped[i];
        e.processed = e.tokens - e.dropped;
        if (weighted_)
            e.load = mass_total > 0.0 ? mass_[size_t(i)] / mass_total : kNaN;
        else
            e.load = routed_total > 0 ? double(e.tokens) / double(routed_total) : kNaN;
        e.importance = prob_tokens > 0 ? importance[i] / double(prob_tokens) : kNaN;
    }

    s.num_groups = num_groups;
    const auto table = counts_.begin() + ptrdiff_t(W::group_expert(N_));
    s.group_expert.assign(table, table + ptrdiff_t(size_t(num_groups) * N_));
    if (num_groups > 0) {
        s.spec_nmi = spec_nmi(s.group_expert, num_groups, N_);
        s.dispatch_entropy = dispatch_entropy(s.group_expert, num_groups, N_);
        s.spec_purity = spec_purity(s.group_expert, num_groups, N_);
    }
    return s;
}

// The saved form (unchanged by the summary layout): routed, dropped, importance, mass, weighted,
// the group table, then the counts and the double sums.
void LayerWindow::save(BinaryWriter& w) const {
    using W = Backend::WindowSummary;
    const auto part = [&](size_t at, size_t n) {
        return std::vector<int64_t>(counts_.begin() + ptrdiff_t(at),
                                    counts_.begin() + ptrdiff_t(at + n));
    };
    w.tag("LWIN");
    w.vec(part(W::routed(N_), size_t(N_)));
    w.vec(part(W::dropped(N_), size_t(N_)));
    w.vec(std::vector<double>(sums_.begin(), sums_.begin() + N_));
    w.vec(mass_);
    w.put(int64_t(weighted_));
    w.vec(part(W::group_expert(N_), size_t(max_groups_) * N_));
    for (int c : {W::num_groups, W::tokens, W::slots, W::dropped_tokens, W::batches, W::prob_tokens,
                  W::logit_tokens, W::group_tokens})
        w.put(count(c));
    for (int s : {W::entropy, W::top1, W::lse2, W::aux, W::z}) w.put(sum(s));
}

void LayerWindow::load(BinaryReader& r) {
    using W = Backend::WindowSummary;
    const auto read = [&](size_t at, int64_t n) {
        std::vector<int64_t> v;
        r.vec(v, n);
        std::copy(v.begin(), v.end(), counts_.begin() + ptrdiff_t(at));
    };
    r.tag("LWIN");
    read(W::routed(N_), N_);
    read(W::dropped(N_), N_);
    std::vector<double> importance;
    r.vec(importance, N_);
    std::copy(importance.begin(), importance.end(), sums_.begin());
    r.vec(mass_, N_);
    weighted_ = r.get<int64_t>() != 0;
    read(W::group_expert(N_), int64_t(max_groups_) * N_);
    const int64_t num_groups = r.get<int64_t>();
    if (num_groups < 0 || num_groups > max_groups_)
        throw std::runtime_error("training state: a statistics window with too many groups");
    count(W::num_groups) = num_groups;
    for (int c : {W::tokens, W::slots, W::dropped_tokens, W::batches, W::prob_tokens,
                  W::logit_tokens, W::group_tokens})
        r.get(count(c));
    for (int s : {W::entropy, W::top1, W::lse2, W::aux, W::z}) r.get(sums_[W::sum(N_, W::Sum(s))]);
}

int top1_expert(const float* probs, int N, int t) {
    const float* p = probs + size_t(t) * N;
    int best = 0;
    for (int i = 1; i < N; ++i)
        if (p[i] > p[best]) best = i;
    return best;
}

void router_grad_stats(std::span<const float> task, std::span<const float> aux, LayerStats& st) {
    double tt = 0.0, aa = 0.0, ta = 0.0;
    for (size_t i = 0; i < task.size(); ++i) tt += double(task[i]) * task[i];
    for (size_t i = 0; i < aux.size(); ++i) aa += double(aux[i]) * aux[i];
    for (size_t i = 0; i < std::min(task.size(), aux.size()); ++i) ta += double(task[i]) * aux[i];
    const double nt = std::sqrt(tt), na = std::sqrt(aa);
    st.router_grad_task = nt;
    st.router_grad_aux = na;
    st.router_grad_cos = nt > 0 && na > 0 ? ta / (nt * na) : LayerStats::kNaN;
}

double FlipTracker::update(std::span<const int> top1) {
    double rate = std::numeric_limits<double>::quiet_NaN();
    if (has_previous_ && previous_.size() == top1.size() && !top1.empty()) {
        int64_t changed = 0;
        for (size_t t = 0; t < top1.size(); ++t) changed += previous_[t] != top1[t];
        rate = double(changed) / double(top1.size());
    }
    previous_.assign(top1.begin(), top1.end());
    has_previous_ = true;
    return rate;
}

void FlipTracker::save(BinaryWriter& w) const {
    w.tag("FLIP");
    w.put<uint8_t>(has_previous_);
    w.vec(previous_);
}

void FlipTracker::load(BinaryReader& r) {
    r.tag("FLIP");
    has_previous_ = r.get<uint8_t>() != 0;
    r.vec(previous_);
}

std::string_view collapse_kind_name(CollapseKind kind) {
    return kind == CollapseKind::dead ? "dead" : "revived";
}

CollapseTracker::CollapseTracker(int num_layers, int N)
    : layers_(num_layers),
      N_(N),
      interval_(size_t(num_layers) * size_t(N), 0),
      mass_interval_(size_t(num_layers) * size_t(N), 0.0),
      weighted_(size_t(num_layers), 0),
      dead_(size_t(num_layers) * size_t(N), 0),
      first_dead_(size_t(num_layers)) {
    MOESIM_CHECK(num_layers >= 0 && N >= 0, "statistics invariant");
}

void CollapseTracker::count(int layer, std::span<const int> routed) {
    MOESIM_CHECK(layer >= 0 && layer < layers_ && routed.size() == size_t(N_), "bad layer");
    int64_t* c = interval_.data() + size_t(layer) * N_;
    for (int i = 0; i < N_; ++i) c[i] += routed[size_t(i)];
}

void CollapseTracker::count(int layer, std::span<const int64_t> routed) {
    MOESIM_CHECK(layer >= 0 && layer < layers_ && routed.size() == size_t(N_), "bad layer");
    int64_t* c = interval_.data() + size_t(layer) * N_;
    for (int i = 0; i < N_; ++i) c[i] += routed[size_t(i)];
}

void CollapseTracker::count_weighted(int layer, std::span<const double> mass) {
    MOESIM_CHECK(layer >= 0 && layer < layers_ && mass.size() == size_t(N_), "bad layer");
    double* c = mass_interval_.data() + size_t(layer) * N_;
    for (int i = 0; i < N_; ++i) c[i] += mass[size_t(i)];
    weighted_[size_t(layer)] = 1;
}

void CollapseTracker::end_interval(int64_t step, int layer, std::vector<CollapseEvent>& events) {
    MOESIM_CHECK(layer >= 0 && layer < layers_, "bad layer");
    if (weighted_[size_t(layer)]) {
        double* m = mass_interval_.data() + size_t(layer) * N_;
        double total = 0.0;
        for (int i = 0; i < N_; ++i) total += m[i];
        if (total > 0.0) {
            std::vector<double> fractions(static_cast<size_t>(N_));
            for (int i = 0; i < N_; ++i) fractions[size_t(i)] = m[i] / total;
            observe(step, layer, fractions, events);
        }
        std::fill(m, m + N_, 0.0);
        std::fill_n(interval_.data() + size_t(layer) * N_, N_, int64_t{0});
        weighted_[size_t(layer)] = 0;
        return;
    }
    int64_t* c = interval_.data() + size_t(layer) * N_;
    int64_t total = 0;
    for (int i = 0; i < N_; ++i) total += c[i];
    if (total > 0) {
        std::vector<double> fractions(static_cast<size_t>(N_));
        for (int i = 0; i < N_; ++i) fractions[size_t(i)] = double(c[i]) / double(total);
        observe(step, layer, fractions, events);
    }
    std::fill(c, c + N_, int64_t{0});
}

void CollapseTracker::save(BinaryWriter& w) const {
    w.tag("COLL");
    w.vec(interval_);
    w.vec(mass_interval_);
    w.vec(weighted_);
    w.vec(dead_);
    for (const auto& f : first_dead_) w.put<int64_t>(f ? *f : -1);
}

void CollapseTracker::load(BinaryReader& r) {
    r.tag("COLL");
    r.vec(interval_, int64_t(layers_) * N_);
    r.vec(mass_interval_, int64_t(layers_) * N_);
    r.vec(weighted_, int64_t(layers_));
    r.vec(dead_, int64_t(layers_) * N_);
    for (auto& f : first_dead_) {
        const int64_t v = r.get<int64_t>();
        f = v < 0 ? std::nullopt : std::optional<int64_t>(v);
    }
}

void CollapseTracker::observe(int64_t step, int layer, std::span<const double> load,
                              std::vector<CollapseEvent>& events) {
    MOESIM_CHECK(layer >= 0 && layer < layers_ && load.size() == size_t(N_),
                 "statistics invariant");
    const double threshold = 1.0 / (10.0 * N_);
    for (int i = 0; i < N_; ++i) {
        const double l = load[size_t(i)];
        if (std::isnan(l)) continue;
        uint8_t& dead = dead_[size_t(layer) * N_ + size_t(i)];
        if (l < threshold && !dead) {
            dead = 1;
            events.push_back({step, layer, i, CollapseKind::dead});
            if (!first_dead_[size_t(layer)]) first_dead_[size_t(layer)] = step;
        } else if (l >= threshold && dead) {
            dead = 0;
            events.push_back({step, layer, i, CollapseKind::revived});
        }
    }
}

bool CollapseTracker::is_dead(int layer, int expert) const {
    return dead_[size_t(layer) * N_ + size_t(expert)] != 0;
}

int CollapseTracker::dead_count(int layer) const {
    const auto first = dead_.begin() + ptrdiff_t(size_t(layer) * N_);
    return int(std::count(first, first + N_, uint8_t{1}));
}

std::optional<int64_t> CollapseTracker::first_dead_step() const {
    std::optional<int64_t> first;
    for (const auto& f : first_dead_)
        if (f && (!first || *f < *first)) first = f;
    return first;
}

std::optional<int64_t> CollapseTracker::first_dead_step(int layer) const {
    return first_dead_[size_t(layer)];
}

}  // namespace moe
