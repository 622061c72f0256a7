// Token-level routing statistics of one MoE layer over one evaluation (token tasks: markov,
// modular; docs/metrics.md): spec_nmi_token of layers.csv, and the rows of tokens.csv,
// positions.csv and position_experts.csv.
//
// A TokenWindow is sized once for N experts, token ids in [0, V) and positions in [0, P),
// reset() at every evaluation and fed one observe() per eval batch. Per token t of a batch:
// its token id v[t] (the example's current token, Batch::token), its position s[t] in its
// sequence (Batch::position) and its top-1 expert e[t] = argmax_i p[t,i] (ties: the lower index;
// kept or dropped, as for spec_nmi). Over the window:
//   token table    n[v,i]        = #{t : v[t] = v, e[t] = i}                 (V, N)
//   spec_nmi_token               = 2 I(token; expert) / (H(token) + H(expert)) of that table,
//                                  exactly spec_nmi's formula and conventions (load_stats.h)
//                                  with the token id in place of the group
//   position table m[s,i]        = #{t : s[t] = s, e[t] = i}                 (P, N)
//   per position s: tokens[s]    = #{t : s[t] = s}  (= sum_i m[s,i])
//                   processed[s] = sum over those tokens of their processed assignments
//                   dropped_tokens[s] = those with no processed assignment
//   routed per token r           = sum_b sum_i A_b[i] / sum_b T_b  (k for token choice)
//   drop_rate[s]                 = 1 - processed[s] / (r tokens[s])
// so that sum_s (r tokens[s] - processed[s]) = sum_i D[i]: the token-weighted mean of
// drop_rate[s] over positions is layers.csv's drop_rate of the same window. drop_rate[s] is
// the exact dropped fraction of position s's assignments when every token is routed to the same
// number of experts (token choice top-k); for expert choice it is the shortfall of position s
// against the mean. A dense plan (Soft MoE slots) drops nothing and has no per-token
// assignments: drop_rate[s] = dropped_token_rate[s] = 0 and processed[s] is undefined.
// Counts are exact integer sums; a rate with no tokens is NaN.
#pragma once

#include "routing/routing_plan.h"

#include <cstdint>
#include <span>
#include <vector>

namespace moe {

struct PositionStats {
    int position = 0;
    int64_t tokens = 0, processed = 0, dropped_tokens = 0;
    bool has_processed = true;  // false after a dense plan (processed is then not defined)
    double drop_rate = 0.0, dropped_token_rate = 0.0;
};

class TokenWindow {
public:
    // N experts, token ids in [0, V), positions in [0, P).
    TokenWindow(int N = 0, int V = 0, int P = 0);

    void reset();  // keeps every buffer

    // One batch of this layer: its plan (T tokens, N experts), top1 (T) each token's top-1
    // expert (top1_expert of routing_stats.h), tokens (T) token ids and positions (T).
    // Allocates nothing.
    void observe(const RoutingPlan& plan, const int* top1, const int* tokens, const int* positions);

    // (V, N) row-major: n[v,i].
    std::span<const int64_t> token_expert() const { return token_expert_; }
    // (P, N) row-major: m[s,i], the top-1 expert distribution per position.
    std::span<const int64_t> position_expert() const { return position_expert_; }
    int64_t token_count(int v) const;  // sum_i n[v,i]
    double spec_nmi_token() const;     // NaN when no token was observed
    // The positions that had tokens, ascending.
    std::vector<PositionStats> positions() const;

    int experts() const { return N_; }
    int vocab() const { return V_; }

private:
    int N_ = 0, V_ = 0, P_ = 0;
    std::vector<int64_t> token_expert_;                              // (V, N)
    std::vector<int64_t> position_expert_;                           // (P, N)
    std::vector<int64_t> pos_tokens_, pos_processed_, pos_dropped_;  // (P)
    bool dense_ = false;              // a dense plan was observed: no per-token assignments
    int64_t tokens_ = 0, slots_ = 0;  // sum_b T_b, sum_b sum_i A_b[i]
};

// The token ids that tokens.csv reports: every id in [0, V) that occurs in `tokens` when at most
// `limit` do, else the `limit` most frequent (ties: the lower id); ascending.
std::vector<int> reported_tokens(std::span<const int> tokens, int V, int limit);

}  // namespace moe
