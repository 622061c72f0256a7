// Routing statistics of one MoE layer over a log window (METRICS.md): the rows of layers.csv,
// experts.csv and specialization.csv.
//
// A LayerWindow is sized once for N experts (and at most G ground-truth groups), reset() at
// every log row, and fed one observe() per step (train) or per eval batch. It reads the plan
// (routing_plan.h) and the router probabilities, never a router's own layout. Per batch b with
// T_b tokens, routed A_b[i], dropped D_b[i], probabilities p, logits l:
//   tokens[i]          = sum_b A_b[i]                  dropped[i] = sum_b D_b[i]
//   processed[i]       = tokens[i] - dropped[i]        load[i] = tokens[i] / sum_j tokens[j]
//   (a weighted plan, the dense routers': load[i] = mass[i] / sum_j mass[j] with mass[i] the
//   plan's dispatch weight mass summed over the window, and the load statistics come from it:
//   load_stats_weighted; a dense plan, Soft MoE's slots, drops no token)
//   importance[i]      = sum_{b,t} p[t,i] / sum_b T_b
//   max_vio ... gini, min/max_load, dead_experts: load_stats(tokens)   (stats/load_stats.h)
//   drop_rate          = sum_{b,i} D_b[i] / sum_{b,i} A_b[i]   (= / T k for token choice)
//   dropped_token_rate = #{tokens with no processed assignment} / sum_b T_b
//                        (expert choice: a token chosen by no expert has none)
//   router_entropy     = mean over tokens of -sum_i p[t,i] ln p[t,i] / ln N   (1 when N = 1)
//   top1_prob          = mean over tokens of max_i p[t,i]
//   logit_lse2         = mean over tokens of (log sum_i exp l[t,i])^2 (vec_logsumexp)
//   aux_loss, z_loss   = mean over the batches of the values passed to observe()
//   group table n[g,i] = tokens of group g whose top-1 expert is i; the top-1 expert of token
//                        t is argmax_i p[t,i] (ties: the lower index), kept or dropped, whatever
//                        the balancing bias selected (METRICS.md)
//   spec_nmi, dispatch_entropy, spec_purity from that table (stats/load_stats.h); NaN when no
//   groups were given
// Counts are exact integer sums over the window, never averages of per-batch ratios. A column
// that is undefined (no tokens; no probabilities passed; no groups) is NaN: an empty CSV cell.
//
// flip_rate comes from FlipTracker, the collapse events from CollapseTracker, and the router
// gradient columns from router_grad_stats (below): finish() leaves those four NaN.
#pragma once

#include "backend/backend.h"
#include "backend/serialize.h"
#include "routing/routing_plan.h"

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace moe {

struct ExpertStats {
    int64_t tokens = 0;       // A[i]
    int64_t dropped = 0;      // D[i]
    int64_t processed = 0;    // P[i]
    double load = 0.0;        // A[i] / sum_j A[j]
    double importance = 0.0;  // mean over tokens of p[t,i]
};

struct LayerStats {
    static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

    int64_t num_tokens = 0;   // tokens observed over the window
    int64_t num_batches = 0;  // observe() calls over the window

    // layers.csv, in the order of kLayerStatColumns
    double max_vio = kNaN, load_cv = kNaN, load_entropy = kNaN, effective_experts = kNaN;
    double gini = kNaN;
    int dead_experts = 0;
    double min_load = kNaN, max_load = kNaN;
    double drop_rate = kNaN, dropped_token_rate = kNaN;
    double router_entropy = kNaN, top1_prob = kNaN;
    double flip_rate = kNaN;  // FlipTracker (eval rows)
    double spec_nmi = kNaN, dispatch_entropy = kNaN, spec_purity = kNaN;
    double aux_loss = kNaN, z_loss = kNaN, logit_lse2 = kNaN;
    double router_grad_task = kNaN, router_grad_aux = kNaN, router_grad_cos = kNaN;  // trainer

    std::vector<ExpertStats> experts;   // (N): experts.csv (bias comes from the balancer)
    int num_groups = 0;                 // G: the largest num_groups passed to observe()
    std::vector<int64_t> group_expert;  // (G, N) row-major: specialization.csv
};

// layers.csv statistic columns (after step, split, layer), in METRICS.md order, and the values
// of one LayerStats in that order (dead_experts as a double; NaN = empty cell).
inline constexpr std::array<std::string_view, 22> kLayerStatColumns = {
    "max_vio",         "load_cv",        "load_entropy", "effective_experts", "gini",
    "dead_experts",    "min_load",       "max_load",     "drop_rate",         "dropped_token_rate",
    "router_entropy",  "top1_prob",      "flip_rate",    "spec_nmi",          "dispatch_entropy",
    "spec_purity",     "aux_loss",       "z_loss",       "logit_lse2",        "router_grad_task",
    "router_grad_aux", "router_grad_cos"};
std::array<double, kLayerStatColumns.size()> layer_stat_values(const LayerStats& s);

class LayerWindow {
public:
    // N experts; max_groups bounds the num_groups of every observe() (0 = no group table).
    explicit LayerWindow(int N = 0, int max_groups = 0);

    void reset();  // start a new window; keeps every buffer

    // One batch of this layer. plan: its T, N (must equal the window's N), routed, dropped and
    // by-token index. probs: (T, N) row-major router probabilities or nullptr (then no group
    // table either: the top-1 expert is argmax p). logits: (T, N) or nullptr. groups: (T)
    // ground-truth group per token, in [0, num_groups), or nullptr; a negative group means
    // "none" and is skipped. aux_loss, z_loss: the layer's balancing losses for this batch,
    // before their coefficients. O(T*N + N), allocates nothing.
    void observe(const RoutingPlan& plan, const float* probs, const float* logits,
                 const int* groups, int num_groups, double aux_loss, double z_loss);

    LayerStats finish() const;  // O(N log N + G*N)

    int experts() const { return N_; }
    int max_groups() const { return max_groups_; }
    int64_t tokens() const { return count(Backend::WindowSummary::tokens); }

    // The window as a summary in Backend::WindowSummary's layout (for this window's N and
    // max_groups): what a backend's window_observe accumulates into. set_summary() makes such a
    // summary, downloaded at a log row (or before a checkpoint), the window's sums: the window
    // of a run whose batches went through window_observe on the CPU backend then has the bits of
    // one fed by observe() (a weighted plan's masses are host-only: set_summary clears them).
    std::span<const int64_t> summary_counts() const { return counts_; }
    std::span<const double> summary_sums() const { return sums_; }
    void set_summary(std::span<const int64_t> counts, std::span<const double> sums);

    // The open window's sums (a resumed run continues it).
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

private:
    int64_t& count(int c) {
        return counts_[Backend::WindowSummary::count(N_, max_groups_,
                                                     Backend::WindowSummary::Count(c))];
    }
    int64_t count(int c) const {
        return counts_[Backend::WindowSummary::count(N_, max_groups_,
                                                     Backend::WindowSummary::Count(c))];
    }
    double sum(int s) const {
        return sums_[Backend::WindowSummary::sum(N_, Backend::WindowSummary::Sum(s))];
    }

    int N_ = 0, max_groups_ = 0;
    // The window's sums in Backend::WindowSummary's layout (routed, dropped, the group table and
    // the counts; importance and the double sums): the layout a backend's window_observe fills.
    std::vector<int64_t> counts_;
    std::vector<double> sums_;
    std::vector<double> mass_;  // (N) weighted plans: dispatch weight mass
    bool weighted_ = false;     // a weighted plan was observed in the window
};

// Top-1 expert of token t: argmax_i p[t,i] of probs (T, N) (ties: the lower index).
int top1_expert(const float* probs, int N, int t);

// Gradient interference on one layer's router (METRICS.md): the Frobenius norms of the router
// weight gradients of the task loss and of the auxiliary losses, and their cosine (NaN when
// either is 0). Writes router_grad_task, router_grad_aux and router_grad_cos of st.
void router_grad_stats(std::span<const float> task, std::span<const float> aux, LayerStats& st);

// flip_rate: fraction of a fixed probe set of eval tokens whose top-1 expert changed since the
// previous eval. update() returns NaN on the first eval (nothing to compare with) and when the
// probe set's size changed; it then remembers top1 for the next call.
class FlipTracker {
public:
    double update(std::span<const int> top1);
    void reset() {
        previous_.clear();
        has_previous_ = false;
    }
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

private:
    std::vector<int> previous_;
    bool has_previous_ = false;
};

// Collapse events (events.csv): an expert is dead when its load over a whole eval interval is
// below 1/(10N), and revived when it was dead and its load is back at 1/(10N) or more.
// Every expert starts alive. An interval with no tokens (NaN loads) changes nothing.
enum class CollapseKind { dead, revived };
std::string_view collapse_kind_name(CollapseKind kind);  // "dead" | "revived"

struct CollapseEvent {
    int64_t step = 0;
    int layer = 0;
    int expert = 0;
    CollapseKind kind = CollapseKind::dead;
};

class CollapseTracker {
public:
    CollapseTracker(int num_layers, int N);

    // Counts one training step's routed counts A[i] (N) of `layer` into the current interval.
    void count(int layer, std::span<const int> routed);
    // The same with counts summed over several steps (a backend's window_observe interval).
    void count(int layer, std::span<const int64_t> routed);
    // The same for a weighted plan (the dense routers): its dispatch weight masses (N). An
    // interval with any weighted step takes its load fractions from the masses.
    void count_weighted(int layer, std::span<const double> mass);
    // Closes the interval of `layer` that ends at eval `step`: its load fractions go to
    // observe() (nothing when the interval had no tokens) and the interval restarts.
    void end_interval(int64_t step, int layer, std::vector<CollapseEvent>& events);

    // load: (N) load fractions of `layer` over the eval interval that ends at `step`.
    // Appends that layer's transitions, in expert order, to `events`.
    void observe(int64_t step, int layer, std::span<const double> load,
                 std::vector<CollapseEvent>& events);

    bool is_dead(int layer, int expert) const;
    int dead_count(int layer) const;
    std::optional<int64_t> first_dead_step() const;  // over all layers
    std::optional<int64_t> first_dead_step(int layer) const;

    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

private:
    int layers_ = 0, N_ = 0;
    std::vector<int64_t> interval_;                   // (layers, N) routed since the last eval
    std::vector<double> mass_interval_;               // (layers, N) weighted: mass since then
    std::vector<uint8_t> weighted_;                   // (layers) the interval is weighted
    std::vector<uint8_t> dead_;                       // (layers, N)
    std::vector<std::optional<int64_t>> first_dead_;  // (layers)
};

}  // namespace moe
