#include "stats/routing_stats.h"

#include "stats/load_stats.h"

#include "backend/check.h"
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
      routed_(size_t(N), 0),
      dropped_(size_t(N), 0),
      importance_sum_(size_t(N), 0.0),
      mass_(size_t(N), 0.0),
      group_expert_(size_t(max_groups) * size_t(N), 0) {
    MOESIM_CHECK(N >= 0 && max_groups >= 0, "statistics invariant");
}

void LayerWindow::reset() {
    std::fill(routed_.begin(), routed_.end(), 0);
    std::fill(dropped_.begin(), dropped_.end(), 0);
    std::fill(importance_sum_.begin(), importance_sum_.end(), 0.0);
    std::fill(mass_.begin(), mass_.end(), 0.0);
    weighted_ = false;
    std::fill(group_expert_.begin(), group_expert_.end(), 0);
    num_groups_ = 0;
    tokens_ = slots_ = dropped_tokens_ = batches_ = 0;
    prob_tokens_ = logit_tokens_ = group_tokens_ = 0;
    entropy_sum_ = top1_sum_ = lse2_sum_ = 0.0;
    aux_sum_ = z_sum_ = 0.0;
}

void LayerWindow::observe(const RoutingPlan& plan, const float* probs, const float* logits,
                          const int* groups, int num_groups, double aux_loss, double z_loss) {
    MOESIM_CHECK(plan.N == N_, "a plan of another expert count");
    const int T = plan.T, N = plan.N;

    // Counts: A[i], D[i]; the routed total (T k for token choice); tokens with no processed
    // assignment.
    for (int i = 0; i < N; ++i) {
        routed_[size_t(i)] += plan.routed[size_t(i)];
        dropped_[size_t(i)] += plan.dropped[size_t(i)];
        slots_ += plan.routed[size_t(i)];
    }
    if (plan.weighted) {
        weighted_ = true;
        for (int i = 0; i < N; ++i) mass_[size_t(i)] += plan.mass[size_t(i)];
    }
    tokens_ += T;
    if (plan.kind == PlanKind::sparse)  // a dense plan mixes every token into its slots
        for (int t = 0; t < T; ++t)
            if (plan.token_assignments(t) == 0) ++dropped_tokens_;

    // Router probabilities p: (T, N): entropy, top-1 probability, importance. The entropy's
    // terms p ln p are summed over the whole (T, N) block: only their total over tokens is kept.
    constexpr size_t kBlock = 256;
    if (probs != nullptr) {
        float xlogx[kBlock];
        const size_t TN = size_t(T) * N;
        for (size_t b = 0; b < TN; b += kBlock) {
            const size_t len = std::min(kBlock, TN - b);
            vec_xlogx(xlogx, probs + b, len);
            entropy_sum_ -= vec_sum_double(xlogx, len);
        }
        for (int t = 0; t < T; ++t) {
            const float* p = probs + size_t(t) * N;
            for (int i = 0; i < N; ++i) importance_sum_[size_t(i)] += p[i];
            top1_sum_ += vec_max(p, size_t(N));
        }
        prob_tokens_ += T;
    }

    // Logits l: (T, N): (logsumexp_i l[t,i])^2.
    if (logits != nullptr && N > 0) {
        double lse[kBlock];
        for (int t0 = 0; t0 < T; t0 += int(kBlock)) {
            const int m = std::min(int(kBlock), T - t0);
            vec_logsumexp_rows(lse, logits + size_t(t0) * N, size_t(m), size_t(N));
            for (int r = 0; r < m; ++r) lse2_sum_ += lse[r] * lse[r];
        }
        logit_tokens_ += T;
    }

    // Group x top-1 expert table.
    if (groups != nullptr && probs != nullptr) {
        MOESIM_CHECK(num_groups >= 0 && num_groups <= max_groups_, "more groups than sized for");
        num_groups_ = std::max(num_groups_, num_groups);
        for (int t = 0; t < T; ++t) {
            const int g = groups[t];
            if (g < 0) continue;
            MOESIM_CHECK(g < num_groups, "a group id out of range");
            const int e = top1_expert(probs, N, t);
            ++group_expert_[size_t(g) * N + size_t(e)];
            ++group_tokens_;
        }
    }

    aux_sum_ += aux_loss;
    z_sum_ += z_loss;
    ++batches_;
}

LayerStats LayerWindow::finish() const {
    constexpr double kNaN = LayerStats::kNaN;
    LayerStats s;
    s.num_tokens = tokens_;
    s.num_batches = batches_;

    const LoadStats ls = weighted_ ? load_stats_weighted(mass_) : load_stats(routed_);
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
        routed_total += routed_[size_t(i)];
        dropped_total += dropped_[size_t(i)];
        mass_total += mass_[size_t(i)];
    }
    s.drop_rate = slots_ > 0 ? double(dropped_total) / double(slots_) : kNaN;
    s.dropped_token_rate = tokens_ > 0 ? double(dropped_tokens_) / double(tokens_) : kNaN;

    if (prob_tokens_ > 0) {
        const double mean_h = entropy_sum_ / double(prob_tokens_);
        s.router_entropy = N_ == 1 ? 1.0 : mean_h / std::log(double(N_));
        s.top1_prob = top1_sum_ / double(prob_tokens_);
    }
    if (logit_tokens_ > 0) s.logit_lse2 = lse2_sum_ / double(logit_tokens_);
    if (batches_ > 0) {
        s.aux_loss = aux_sum_ / double(batches_);
        s.z_loss = z_sum_ / double(batches_);
    }

    s.experts.resize(size_t(N_));
    for (int i = 0; i < N_; ++i) {
        ExpertStats& e = s.experts[size_t(i)];
        e.tokens = routed_[size_t(i)];
        e.dropped = dropped_[size_t(i)];
        e.processed = e.tokens - e.dropped;
        if (weighted_)
            e.load = mass_total > 0.0 ? mass_[size_t(i)] / mass_total : kNaN;
        else
            e.load = routed_total > 0 ? double(e.tokens) / double(routed_total) : kNaN;
        e.importance = prob_tokens_ > 0 ? importance_sum_[size_t(i)] / double(prob_tokens_) : kNaN;
    }

    s.num_groups = num_groups_;
    s.group_expert.assign(group_expert_.begin(),
                          group_expert_.begin() + ptrdiff_t(size_t(num_groups_) * N_));
    if (num_groups_ > 0) {
        s.spec_nmi = spec_nmi(s.group_expert, num_groups_, N_);
        s.dispatch_entropy = dispatch_entropy(s.group_expert, num_groups_, N_);
        s.spec_purity = spec_purity(s.group_expert, num_groups_, N_);
    }
    return s;
}

void LayerWindow::save(BinaryWriter& w) const {
    w.tag("LWIN");
    w.vec(routed_);
    w.vec(dropped_);
    w.vec(importance_sum_);
    w.vec(mass_);
    w.put(int64_t(weighted_));
    w.vec(group_expert_);
    for (int64_t v : {int64_t(num_groups_), tokens_, slots_, dropped_tokens_, batches_,
                      prob_tokens_, logit_tokens_, group_tokens_})
        w.put(v);
    for (double v : {entropy_sum_, top1_sum_, lse2_sum_, aux_sum_, z_sum_}) w.put(v);
}

void LayerWindow::load(BinaryReader& r) {
    r.tag("LWIN");
    r.vec(routed_, N_);
    r.vec(dropped_, N_);
    r.vec(importance_sum_, N_);
    r.vec(mass_, N_);
    weighted_ = r.get<int64_t>() != 0;
    r.vec(group_expert_, int64_t(max_groups_) * N_);
    num_groups_ = int(r.get<int64_t>());
    if (num_groups_ < 0 || num_groups_ > max_groups_)
        throw std::runtime_error("training state: a statistics window with too many groups");
    for (int64_t* v : {&tokens_, &slots_, &dropped_tokens_, &batches_, &prob_tokens_,
                       &logit_tokens_, &group_tokens_})
        r.get(*v);
    for (double* v : {&entropy_sum_, &top1_sum_, &lse2_sum_, &aux_sum_, &z_sum_}) r.get(*v);
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
