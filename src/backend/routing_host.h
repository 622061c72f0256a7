// The routing arithmetic of the default path (router.type topk with softmax scores, the plan, the
// position drop policy, the balancing losses' reductions) as host functions, in one place: the
// CPU backend's routing ops (backend.h, "Routing") call them, and so do the host routers,
// capacity and the losses (routing/), so that a router run on the host and the same routing run
// as backend ops on the CPU give the same bits. Each function is serial; callers parallelise
// over independent rows. Implemented in backend/cpu/cpu_routing.cpp.
#pragma once

#include "backend/topk_row.h"

#include <cstdint>
#include <vector>

namespace moe {

// p (T, N) = softmax of each of the T rows of z (row stride ldz >= N): p = exp(z - max z) / sum,
// the exponentials through vec_exp_shifted (a chunk of rows at a time) and the sum by vec_sum.
// p must not overlap z.
void host_softmax_rows(float* p, const float* z, int T, int N, int ldz);

// In place, per row of d (T rows of stride ldd): d = p * (d - <d, p>) (dot by vec_dot).
void host_softmax_rows_backward(float* d, const float* p, int T, int N, int ldd);

// One row of top-k selection: sel (K) the experts of largest s[i] + bias[i] (bias null: 0), in
// descending order, ties to the lower index; gate (K) = scale * s[sel] / sum_j s[sel_j] when
// normalize, else scale * s[sel]. kept (null: all experts compete) marks the groups of
// group_size consecutive experts that compete (the top-k router's group-limited selection).
// gs (null: s) holds the scores the gates read (clean gates: topk_row.h). K <= kHostTopkMaxK.
constexpr int kHostTopkMaxK = kTopkRowMaxK;
void host_topk_row(int* sel, float* gate, const float* s, const float* bias, int N, int K,
                   bool normalize, float scale, const int* kept = nullptr, int group_size = 1,
                   const float* gs = nullptr);

// The gates' backward into the scores of one row: ds[sel[j]] += d(sum_j dg[j] gate[j]) / ds.
void host_topk_row_backward(float* ds, const float* s, const int* sel, const float* dg, int K,
                            bool normalize, float scale);

// The plan from R slots (routing_plan.h, plan_from_slots): routed (N) the histogram of
// expert[s] (-1: not routed), offsets (N+1) its exclusive scan, and a stable scatter by expert:
// slot s goes to a = offsets[e] + the number of earlier slots of e, token[a] = slot_token[s]
// (slot_token null: s / per_token), gate[a] = slot_gate[s], slot[a] = s. Returns A = offsets[N].
int host_plan_build(int* offsets, int* token, float* gate, int* slot, int* routed,
                    const int* expert, const float* slot_gate, const int* slot_token, int R,
                    int per_token, int N);

// The by-token index of A assignments (routing_plan.h, plan_index_by_token): tok_offsets (T+1)
// the exclusive scan of each token's count, tok_assign (A) each token's assignments in slot
// order. cursor: scratch, grown to T.
void host_plan_index_by_token(int* tok_offsets, int* tok_assign, const int* token, const int* slot,
                              int T, int A, std::vector<int>& cursor);

// Capacity C >= 1 with the position policy (capacity.h), in place: expert e keeps the first C
// assignments of its segment, dropped[e] = the rest; offsets, token, gate and slot are
// compacted to the kept ones. Returns the new A = offsets[N].
int host_capacity_position(int* offsets, int* token, float* gate, int* slot, int* dropped, int N,
                           int64_t C);

// The same with the score policy: expert e keeps the C assignments of largest gate (ties: the
// earlier slot), listed in slot order. scratch grows to the largest segment.
int host_capacity_score(int* offsets, int* token, float* gate, int* slot, int* dropped, int N,
                        int64_t C, std::vector<int>& scratch);

// d_slot (R) = 0, then d_slot[slot[a]] = d_gate[a] for a < A (routing/router.h).
void host_gate_grad_to_slots(float* d_slot, const float* d_gate, const int* slot, int A, int R);

// The Switch loss's gradient (balancer.h): d_probs[t,i] += float(coef * N * (routed[i] / (T K)) /
// T) for every row; scratch holds N doubles.
void host_switch_loss_grad(float* d_probs, const int* routed, int T, int N, int K, float coef,
                           double* scratch);

// The z-loss's gradient of one row (balancer.h): d[i] += float(c * exp(x[i] - float(lse))),
// c = coef * 2 lse / T, the exponentials through vec_exp_shifted.
void host_z_loss_grad_row(float* d, const float* x, double lse, int N, float coef, int T);

// The balancing losses' values from their reductions, one compiled loop for every caller (a
// product-sum that the compiler may contract into fused multiply-adds in one place and not in
// another would move bits):
//   host_switch_loss_value = N * sum_i routed[i] / (T K) * (colsum[i] / T), i in order;
//   host_add_squares       = total + sum_r v[r]^2, r = 0..n-1 in order (the z-loss's sum).
double host_switch_loss_value(const int* routed, const double* colsum, int T, int N, int K);
double host_add_squares(double total, const double* v, int n);

// sums (N) = the column sums of x (T, N) in double, each adding t = 0, 1, ..., T-1 in order.
void host_column_sums(double* sums, const float* x, int T, int N);

// One batch added to a layer's window summary (backend.h, window_observe; the layout is
// Backend::WindowSummary with G group rows): LayerWindow::observe's arithmetic, in its order.
// Checks num_groups <= G and every group id < num_groups (throws InternalError).
void host_window_observe(int64_t* counts, double* sums, int64_t* interval, const int* routed,
                         const int* dropped, const int* tok_offsets, const float* probs,
                         const float* logits, const int* groups, int num_groups, double aux_loss,
                         double z_loss, int T, int N, int G);

}  // namespace moe
