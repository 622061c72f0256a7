// The RoutingPlan: the centre of the house (DESIGN.md). A router turns scores into a plan;
// dispatch, combine, the backward pass, the balancers and the statistics read the plan (and the
// router probabilities), never a router's own layout.
//
// The plan is kept per ASSIGNMENT (a token-expert pair), so that token choice (k experts per
// token), expert choice (0..N experts per token) and balanced assignments all fit:
//   offsets[i] .. offsets[i+1]   expert i's processed assignments                  (N+1)
//   token[a], gate[a]            assignment a's token and gate weight g[t,i]       (A)
//   slot[a]                      the router's own index of assignment a: the order in which
//                                the router emitted it (top-k: t*k + j, j-th choice of token
//                                t); a router maps gradients back to its state through it (A)
//   tok_offsets[t] .. [t+1]      token t's assignments, listed in tok_assign in slot order
//   tok_assign[]                 (T+1, A): combine and its backward walk them, so each
//                                token's sum has one fixed order (no atomics)
//   routed[i]                    A[i] of METRICS.md: assignments routed to i before capacity
//   dropped[i]                   D[i]: of those, dropped by the capacity limit
// Each expert's segment lists its assignments in slot order (for top-k: token order), which is
// the order the position drop policy keeps them in. Processed P[i] = routed[i] - dropped[i] =
// offsets[i+1] - offsets[i].
//
// kind = dense (Soft MoE, router soft_slots): the A rows are slots, not token-expert pairs;
// expert i processes the slot rows [offsets[i], offsets[i+1]), and every slot mixes every token:
//   dispatch (T, A)   slot a's input  = sum_t dispatch[t,a] x[t]       (Xs = dispatchᵀ x)
//   combine  (T, A)   token t's output = sum_a combine[t,a] Y[a]        (y = combine Y)
// token, gate, slot, tok_offsets and tok_assign are not used; routed[i] = the slot rows of
// expert i, dropped[i] = 0.
//
// weighted (the dense routers, soft and soft_slots): the statistics report the load of expert i
// as mass[i] / sum_j mass[j], the dispatch weight mass it received (METRICS.md; docs/metrics.md),
// instead of routed counts, which are constant for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moe {

enum class PlanKind { sparse, dense };

struct RoutingPlan {
    PlanKind kind = PlanKind::sparse;
    int T = 0, N = 0, A = 0;                   // tokens, experts, processed assignments
    int64_t capacity = 0;                      // C of METRICS.md; 0 = no limit
    std::vector<int> offsets;                  // (N+1)
    std::vector<int> token;                    // (A)
    std::vector<float> gate;                   // (A)
    std::vector<int> slot;                     // (A)
    std::vector<int> tok_offsets, tok_assign;  // (T+1), (A)
    std::vector<int> routed, dropped;          // (N)
    std::vector<float> dispatch, combine;      // kind = dense: (T, A) each
    bool weighted = false;                     // the load statistics read mass, not routed
    std::vector<double> mass;                  // (N) weighted: dispatch weight mass per expert

    int assignments() const { return A; }
    int processed(int i) const { return offsets[size_t(i) + 1] - offsets[size_t(i)]; }
    int token_assignments(int t) const {
        return tok_offsets[size_t(t) + 1] - tok_offsets[size_t(t)];
    }

    // Sizes every buffer once for at most T_max tokens, N experts and A_max assignments (the
    // router's max_assignments); later plans of up to that size allocate nothing.
    void reserve(int T_max, int N_, size_t A_max);
    // The dense kind's dispatch and combine weights, for up to T_max tokens and A_max slots.
    void reserve_dense(int T_max, size_t A_max);
};

// Builds the plan from a router's R emitted assignments (slots s = 0..R-1, in emission order):
// expert[s] (-1: the router itself dropped the slot: it is not routed), gate[s], and the token
// of the slot: tokens[s], or s / per_token when tokens is null. Groups them by expert (each
// segment in slot order), sets routed, clears dropped and capacity. Does not build the by-token
// index (capacity changes the assignments first): call plan_index_by_token last.
void plan_from_slots(RoutingPlan& plan, int T, int R, const int* expert, const float* gate,
                     const int* tokens, int per_token);

// The one shared helper that builds tok_offsets / tok_assign from the by-expert assignments:
// each token's assignments in slot order. scratch is reused (no allocation once grown).
void plan_index_by_token(RoutingPlan& plan, std::vector<int>& scratch);

}  // namespace moe
