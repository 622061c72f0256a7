// The ops that model and routing code may call (DESIGN.md: model code calls ops, never Eigen or
// CUDA directly). Matrices are dense, row-major and contiguous; a "row" is a token.
//
// Conventions (llm.c): outputs first, then inputs, then sizes. Parameter gradients accumulate
// (+=); activation gradients overwrite (=) unless the op says otherwise.
//
// Determinism: every implementation must give bit-identical results for any thread count. The
// CPU backend does so by cutting work into pieces whose shape depends only on the problem size
// (never on the number of threads) and computing each piece serially.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "config/config.h"

namespace moe {

class Backend {
public:
    virtual ~Backend() = default;
    virtual Device device() const = 0;
    virtual int threads() const = 0;

    // Memory. Every pointer an op takes is this backend's memory (host memory on the CPU, device
    // memory on CUDA), except the segment offsets `off` of the grouped ops, which are host memory
    // (a launch needs the segment sizes), and the scalars that ops return. Model code allocates
    // through buffer.h's Buf, and moves data between the host and the backend only through
    // to_device / to_host, which are no-ops on the CPU when both pointers are the same.
    //
    // host_memory(): whether this backend's memory is host memory (the CPU).
    virtual bool host_memory() const = 0;
    // bytes of zeroed memory; release(nullptr) is a no-op.
    virtual void* alloc(size_t bytes) = 0;
    virtual void release(void* p) = 0;
    virtual void to_device(void* dst, const void* host_src, size_t bytes) = 0;
    virtual void to_host(void* host_dst, const void* src, size_t bytes) = 0;
    // dst = src within this backend's memory (the ranges do not overlap); and p = 0.
    virtual void copy(void* dst, const void* src, size_t bytes) = 0;
    virtual void fill_zero(void* p, size_t bytes) = 0;
    // Waits for the work queued so far (a device runs ops asynchronously; the CPU does not).
    virtual void synchronize() {}

    // C (M,N) = op(A) · op(B) + beta · C, with op(A) (M,K) and op(B) (K,N).
    // A is stored (M,K), or (K,M) when ta; B is stored (K,N), or (N,K) when tb.
    virtual void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                      bool tb, float beta) = 0;

    // Grouped row products, one per expert segment g = 0..G-1 with rows [off[g], off[g+1]):
    //   C[rows] (m_g, N) = A[rows] (m_g, K) · op(B_g) + beta · C[rows]
    // where B_g = B + g * b_stride is stored (K,N), or (N,K) when tb.
    virtual void gemm_grouped_rows(float* C, const float* A, const float* B, size_t b_stride,
                                   const int* off, int G, int N, int K, bool tb, float beta) = 0;

    // Grouped weight gradients: for each segment g,
    //   C_g (M,N) += A[rows]ᵀ (M, m_g) · B[rows] (m_g, N),   C_g = C + g * c_stride.
    virtual void gemm_grouped_wgrad(float* C, size_t c_stride, const float* A, const float* B,
                                    const int* off, int G, int M, int N) = 0;

    // The same with a bias per segment, and no transpose: C[rows] = A[rows] · B_g + bias_g,
    // bias_g = bias + g * bias_stride (N values, added to every row). The bias is the product's
    // starting value, so C is written once.
    virtual void gemm_grouped_rows_bias(float* C, const float* A, const float* B, size_t b_stride,
                                        const float* bias, size_t bias_stride, const int* off,
                                        int G, int N, int K) = 0;
    // Bias gradient per segment: dbias_g (N) += column sums of dC[rows] (m_g, N).
    virtual void bias_grad_grouped(float* dbias, size_t b_stride, const float* dC, const int* off,
                                   int G, int N) = 0;

    // Activation: h (rows, H) = act(pre). For swiglu, pre is (rows, 2H): [gate | up] and
    // h = silu(gate) * up. gelu is the exact erf form.
    virtual void act_forward(float* h, const float* pre, int rows, int H, Activation act) = 0;
    // dpre (rows, H or 2H) = d act / d pre applied to dh (rows, H). dpre may equal pre (in place:
    // each element of pre is read before the element of dpre at the same index is written).
    virtual void act_backward(float* dpre, const float* dh, const float* pre, int rows, int H,
                              Activation act) = 0;

    // The experts' feed-forward block over the grouped rows, as one op. Segment g's weights: W1_g
    // (D, H1) at w1 + g·D·H1, b1_g (H1) at b1 + g·H1, W2_g (H, D) at w2 + g·H·D, b2_g (D) at
    // b2 + g·D; H1 = 2H for swiglu, else H. For each segment g, over its rows:
    //   pre = xd · W1_g + b1_g,   h = act(pre),   yd = h · W2_g + b2_g.
    // Bit for bit the same as gemm_grouped_rows_bias, act_forward and gemm_grouped_rows_bias in
    // that order, which is the default implementation; a backend may instead run each segment's
    // three steps together while its rows are in cache (the CPU does, in one parallel region).
    struct FfnShape {
        int G, D, H, H1;
        Activation act;
    };
    virtual void expert_ffn_forward(float* yd, float* h, float* pre, const float* xd,
                                    const float* w1, const float* b1, const float* w2,
                                    const float* b2, const int* off, const FfnShape& s);
    // Its backward, given dyd = d loss / d yd: the weight and bias gradients accumulate (+=) into
    // dw1, db1, dw2, db2 (laid out as the weights); dh, dpre and dxd are overwritten. For each
    // segment g:
    //   dW2_g += hᵀ dyd,  db2_g += column sums of dyd,  dh = dyd · W2_gᵀ,
    //   dpre = act'(pre) applied to dh,  dW1_g += xdᵀ dpre,  db1_g += column sums of dpre,
    //   dxd = dpre · W1_gᵀ.
    // Bit for bit the same as gemm_grouped_wgrad, bias_grad_grouped, gemm_grouped_rows,
    // act_backward, gemm_grouped_wgrad, bias_grad_grouped and gemm_grouped_rows in that order (the
    // default implementation). In place: dh may equal h, dpre may equal pre and dxd may equal xd
    // (each is read for the last time, segment by segment, before it is written).
    virtual void expert_ffn_backward(float* dxd, float* dpre, float* dh, float* dw1, float* db1,
                                     float* dw2, float* db2, const float* dyd, const float* xd,
                                     const float* h, const float* pre, const float* w1,
                                     const float* w2, const int* off, const FfnShape& s);

    // RMSNorm (Zhang & Sennrich 2019): y = x / rms(x) * g, rms(x) = sqrt(mean(x^2) + eps).
    // x, y (T,D); g (D); rrms (T) = 1/rms(x), saved for backward.
    virtual void rmsnorm_forward(float* y, float* rrms, const float* x, const float* g, int T,
                                 int D) = 0;
    // dx (T,D) = overwritten; dg (D) += accumulated.
    virtual void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x,
                                  const float* g, const float* rrms, int T, int D) = 0;

    // dst (n, D): dst[a] = src[idx[a]].
    virtual void gather_rows(float* dst, const float* src, const int* idx, int n, int D) = 0;
    // Combine assignments back to tokens, walking the plan's by-token index (routing_plan.h):
    //   out[t] (+)= sum_{i in [tok_off[t], tok_off[t+1])} w[a] * Y[a],  a = tok_assign[i],
    // in that fixed order (no atomics). w may be null (weight 1). A token with no assignment
    // gets 0. accumulate: add to out instead of overwriting it.
    virtual void combine_by_token(float* out, const float* Y, const int* tok_off,
                                  const int* tok_assign, const float* w, int T, int D,
                                  bool accumulate) = 0;
    // Backward of combine: for each assignment a of token t:
    //   dY[a] = w[a] * dout[t];  dw[a] = <dout[t], Y[a]>.
    // dY may equal Y: each row a belongs to one token, and is read before it is overwritten.
    virtual void combine_by_token_backward(float* dY, float* dw, const float* dout, const float* Y,
                                           const int* tok_off, const int* tok_assign,
                                           const float* w, int T, int D) = 0;

    // Sigmoid-gated rows (Qwen-MoE's gated shared expert): with g[t] = sigmoid(a[t]),
    //   y[t] (D) += g[t] * S[t];  a is overwritten with g.
    virtual void gate_rows_forward(float* y, float* a, const float* S, int T, int D) = 0;
    // Its backward, from dy (T,D), S (T,D) and the gates g (T) of forward:
    //   dS[t] = g[t] * dy[t];  da[t] = <dy[t], S[t]> * g[t] * (1 - g[t])  (the dot in double).
    virtual void gate_rows_backward(float* dS, float* da, const float* dy, const float* S,
                                    const float* g, int T, int D) = 0;

    // Embedding lookup: out[t] (D) = table[ids[t]] (overwritten), or += when accumulate. ids (T)
    // are rows of table, in the backend's memory.
    virtual void embedding_forward(float* out, const float* table, const int* ids, int T, int D,
                                   bool accumulate) = 0;
    // Its backward: dtable[v] (D) += sum over the tokens t with ids[t] = v of dout[t], each row's
    // sum taken in ascending t (no atomics). dtable (V, D); ids in [0, V).
    virtual void embedding_backward(float* dtable, const float* dout, const int* ids, int T, int V,
                                    int D) = 0;

    // Causal multi-head self-attention over nseq sequences of S tokens each (token t = s * S + i,
    // i the position), H heads of width hd, D = H * hd. qkv (T, 3D): row t is [q | k | v], head h
    // at columns h*hd .. h*hd+hd-1 of each third. For each sequence s, head h, query position i:
    //   P[s,h,i,j] = softmax over j <= i of scale * <q_i, k_j>   (max-subtracted; 0 for j > i)
    //   out[t, h] (hd) = sum_{j <= i} P[s,h,i,j] v_j              (in ascending j)
    // out (T, D) overwritten; probs (nseq, H, S, S) receives P, saved for backward.
    virtual void attention_forward(float* out, float* probs, const float* qkv, int nseq, int S,
                                   int H, int hd, float scale) = 0;
    // Its backward, from dout (T, D), qkv and probs of forward: dqkv (T, 3D) overwritten;
    // dscores (nseq, H, S, S) is workspace (overwritten with d loss / d scores).
    //   dP_ij = <dout_i, v_j>;  dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij')
    //   dq_i = scale sum_j dS_ij k_j;  dk_j = scale sum_{i >= j} dS_ij q_i;  dv_j = sum_{i >= j} P_ij dout_i
    // every sum in ascending index order.
    virtual void attention_backward(float* dqkv, float* dscores, const float* dout,
                                    const float* qkv, const float* probs, int nseq, int S, int H,
                                    int hd, float scale) = 0;

    // y (n) += x (n) (elementwise add), and x (n) *= s.
    virtual void add(float* y, const float* x, size_t n) = 0;
    virtual void scale(float* x, size_t n, float s) = 0;
    // Sum of squares of x (n), in double, in a fixed order.
    virtual double sum_squares(const float* x, size_t n) = 0;

    // Softmax cross-entropy over rows: logits (T,C), labels (T). Returns the mean loss and
    // writes dlogits (T,C) = (softmax - onehot) * scale / T (the gradient of scale * mean loss).
    // correct (may be null) receives the number of rows whose argmax equals the label.
    virtual double cross_entropy(float* dlogits, const float* logits, const int* labels, int T,
                                 int C, float scale, int64_t* correct) = 0;

    // ---- Routing: the routing half of the default path (router.type topk with softmax scores,
    // routing/routers/topk.cpp; the plan, routing/routing_plan.h; capacity with the position
    // policy, routing/capacity.h; the balancing losses' reductions, METRICS.md). The CPU backend
    // runs the host routers' own code (backend/routing_host.h), so routing through these ops on
    // the CPU gives the host router's bits. Integer outputs (selections, plans, counts) are
    // deterministic and the same on every device given the same inputs.
    //
    // p (T, N) = softmax of each row of z (T rows of stride ldz >= N): exp(z - max z) / sum over
    // the row. p does not overlap z.
    virtual void softmax_rows(float* p, const float* z, int T, int N, int ldz) = 0;
    // Its backward, in place: d (T rows of stride ldd) holds dL/dp on entry and dL/dz on exit,
    //   d = p * (d - <d, p>) per row.
    virtual void softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) = 0;
    // Top-k of each row of the scores s (T, N) with the balancing bias (N; null: none) added for
    // the selection only: sel (T, K) the K experts of largest s[t,i] + bias[i], best first, ties
    // to the lower expert index; gate (T, K) = scale * s[t,sel] / sum_j s[t,sel_j] when
    // normalize, else scale * s[t,sel] (the sum over j in order). 1 <= K <= min(N, 64).
    virtual void topk_rows(int* sel, float* gate, const float* s, const float* bias, int T, int N,
                           int K, bool normalize, float scale) = 0;
    // The gates' backward into the scores: for each row t, with dg (T, K) the gradient of the
    // gates, ds[t] (T rows of stride ldds) += d(sum_j dg[t,j] gate[t,j]) / d s[t] (accumulated;
    // only the selected entries change). s, sel and the flags are those of topk_rows.
    virtual void topk_rows_backward(float* ds, const float* s, const int* sel, const float* dg,
                                    int T, int N, int K, bool normalize, float scale, int ldds) = 0;
    // The routing plan from R slots (routing_plan.h, plan_from_slots): routed (N) = the histogram
    // of expert (R; -1: not routed), offsets (N+1) = its exclusive scan, and a stable scatter
    // by expert: slot s of expert e goes to a = offsets[e] + the number of slots s' < s of e
    // (each expert's segment in slot order), with token[a] = slot_token[s] (slot_token null:
    // s / per_token), gate[a] = slot_gate[s], slot[a] = s. Overwrites offsets, routed and the
    // first A = offsets[N] values of token, gate and slot (R of each are reserved).
    virtual void plan_build(int* offsets, int* token, float* gate, int* slot, int* routed,
                            const int* expert, const float* slot_gate, const int* slot_token, int R,
                            int per_token, int N) = 0;
    // Capacity C >= 1 with the position drop policy (routing/capacity.h), in place on a plan of
    // N experts: expert e keeps the first C assignments of its segment (slot order), dropped (N)
    // = the rest (overwritten); offsets, token, gate and slot are compacted to the kept ones
    // (A = offsets[N] after). A_max >= offsets[N] on entry, and token, gate and slot hold at
    // least A_max values.
    virtual void capacity_position(int* offsets, int* token, float* gate, int* slot, int* dropped,
                                   int N, int64_t C, int A_max) = 0;
    // The same with the score policy: expert e keeps the C assignments of largest gate (ties: the
    // earlier slot), still listed in slot order. The random and priority policies run on the
    // host (capacity_apply).
    virtual void capacity_score(int* offsets, int* token, float* gate, int* slot, int* dropped,
                                int N, int64_t C, int A_max) = 0;
    // The plan's by-token index (routing_plan.h, plan_index_by_token) of its A = offsets[N]
    // assignments (read from this backend's memory; A <= A_max): tok_offsets (T+1) the
    // exclusive scan of each token's assignment count, tok_assign (A) each token's assignments
    // in slot order. token and slot (A) are the plan's.
    virtual void plan_index_by_token(int* tok_offsets, int* tok_assign, const int* token,
                                     const int* slot, const int* offsets, int N, int T,
                                     int A_max) = 0;
    // The gate gradients of the plan's A = offsets[N] assignments (read from this backend's
    // memory) moved to the router's R slots (routing/router.h, gate_grad_to_slots): d_slot (R)
    // = 0, then d_slot[slot[a]] = d_gate[a] (each slot has at most one assignment).
    virtual void gate_grad_to_slots(float* d_slot, const float* d_gate, const int* slot,
                                    const int* offsets, int N, int R) = 0;
    // The Switch loss's gradient (routing/balancer.h, switch_loss) added to d_probs (T, N): every
    // row gets c_i = float(coef * N * (routed[i] / (T K)) / T), coef * N in float and the rest
    // in double; routed (N) the plan's counts before capacity.
    virtual void switch_loss_grad(float* d_probs, const int* routed, int T, int N, int K,
                                  float coef) = 0;
    // The z-loss's gradient (routing/balancer.h, z_loss) added to d (T rows of stride ldd):
    //   d[t,i] += float(c_t * exp(x[t,i] - float(lse[t]))),  c_t = coef * 2 lse[t] / T (double),
    // the exponential in float (0 below the smallest normal float); x (T rows of stride ldx),
    // lse (T) from logsumexp_rows.
    virtual void z_loss_grad(float* d, const float* x, const double* lse, int T, int N, int ldx,
                             int ldd, float coef) = 0;
    // lse (T) = log sum_i exp(x[t,i]) per row of x (T rows of stride ldx, N >= 1), in double:
    // max + log of the sum in double of the float exponentials exp(x - max) (the z-loss).
    virtual void logsumexp_rows(double* lse, const float* x, int T, int N, int ldx) = 0;
    // sums (N) = the column sums of x (T, N) in double, each adding t = 0, 1, ..., T-1 in order
    // (the Switch loss's mean probability per expert, times T): equal bits on every device.
    virtual void column_sums(double* sums, const float* x, int T, int N) = 0;

    // ---- Routing statistics: one MoE layer's log window summed in this backend's memory
    // (stats/routing_stats.h, LayerWindow; METRICS.md), so that a training step leaves its
    // statistics on the device and they are copied back only at log and eval rows.
    // window_observe adds one batch of T tokens to the window's two arrays, laid out by
    // WindowSummary (counts: int64, sums: double; zeroed to open a window):
    //   routed[i] += routed_b[i], dropped[i] += dropped_b[i] (dropped_b null: 0),
    //   slots += sum_i routed_b[i], tokens += T, batches += 1,
    //   dropped_tokens += #{t : tok_offsets[t+1] == tok_offsets[t]} (tok_offsets (T+1) null: a
    //     dense plan, nothing counted),
    //   with probs (T, N) (null: none of these): importance[i] += sum_t p[t,i],
    //     entropy -= sum over the T N values of p ln p, top1 += sum_t max_i p[t,i],
    //     prob_tokens += T; and with groups (T) too: for each t with groups[t] >= 0 (each
    //     < num_groups), group_expert[groups[t], argmax_i p[t,i] (ties: lower i)] += 1 and
    //     group_tokens += 1; num_groups = max(num_groups, num_groups_b) (<= G, the table's rows),
    //   with logits (T, N) (null: none): lse2 += sum_t logsumexp_i(l[t,i])^2, logit_tokens += T,
    //   aux += losses[0], z += losses[1] (losses: 2 doubles; null: 0 and 0),
    //   interval[i] += routed_b[i] (interval (N) null: nothing; the collapse tracker's counts).
    // The CPU runs LayerWindow::observe's own code (backend/routing_host.h, host_window_observe):
    // its sums have observe's bits. Other devices: the counts are exact, the double sums are
    // fixed-order trees (equal bits run to run, not necessarily the CPU's).
    struct WindowSummary {
        enum Count : int {
            tokens,
            slots,
            dropped_tokens,
            batches,
            prob_tokens,
            logit_tokens,
            group_tokens,
            num_groups,
            kCounts
        };
        enum Sum : int { entropy, top1, lse2, aux, z, kSums };
        // counts: routed (N) | dropped (N) | group_expert (G, N) row-major | the Count scalars
        static size_t routed(int) { return 0; }
        static size_t dropped(int N) { return size_t(N); }
        static size_t group_expert(int N) { return 2 * size_t(N); }
        static size_t count(int N, int G, Count c) { return size_t(2 + G) * size_t(N) + c; }
        static size_t counts_size(int N, int G) { return size_t(2 + G) * size_t(N) + kCounts; }
        // sums: importance (N) | the Sum scalars
        static size_t sum(int N, Sum s) { return size_t(N) + s; }
        static size_t sums_size(int N) { return size_t(N) + kSums; }
    };
    virtual void window_observe(int64_t* counts, double* sums, int64_t* interval, const int* routed,
                                const int* dropped, const int* tok_offsets, const float* probs,
                                const float* logits, const int* groups, int num_groups,
                                const double* losses, int T, int N, int G) = 0;

    // Optimizer steps over n parameters, fused with the gradient bookkeeping of a training step
    // so that parameters, gradients and optimizer state stream through memory once:
    //   - the gradient used is g * grad_scale (1: as is; clipping passes max_norm / norm);
    //   - g is set to zero afterwards, ready for the next step's accumulation;
    //   - grad_sumsq, when not null, receives the sum of squares of g as it was on entry,
    //     bit-identical to sum_squares(g, n).
    // Adam / AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), bias-corrected with step t >= 1;
    // weight_decay is decoupled (AdamW) and 0 for Adam.
    struct AdamHyper {
        float lr, beta1, beta2, eps, weight_decay;
        int64_t t;
    };
    virtual void adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamHyper& h,
                           float grad_scale, double* grad_sumsq) = 0;
    // SGD with optional heavy-ball momentum: v = mu v + g; p -= lr v.
    virtual void sgd_step(float* p, float* g, float* v, size_t n, float lr, float momentum,
                          float grad_scale, double* grad_sumsq) = 0;
};

// The backend for a device; throws UserError when the device is not available.
std::unique_ptr<Backend> backend_create(Device device, int threads);

// The default implementation of the fused expert feed-forward ops: the composition of the
// grouped products, the activation and the bias gradients, in the order the ops document. Inline
// here, so that Backend keeps no out-of-line function (each backend module, the CUDA one included,
// has its own copy of the class's tables). A backend that runs each segment's steps together
// overrides them (the CPU: cpu/cpu_ffn.cpp).
inline void Backend::expert_ffn_forward(float* yd, float* h, float* pre, const float* xd,
                                        const float* w1, const float* b1, const float* w2,
                                        const float* b2, const int* off, const FfnShape& s) {
    const int rows = off[s.G] - off[0];
    gemm_grouped_rows_bias(pre, xd, w1, size_t(s.D) * s.H1, b1, size_t(s.H1), off, s.G, s.H1, s.D);
    act_forward(h + size_t(off[0]) * s.H, pre + size_t(off[0]) * s.H1, rows, s.H, s.act);
    gemm_grouped_rows_bias(yd, h, w2, size_t(s.H) * s.D, b2, size_t(s.D), off, s.G, s.D, s.H);
}

inline void Backend::expert_ffn_backward(float* dxd, float* dpre, float* dh, float* dw1, float* db1,
                                         float* dw2, float* db2, const float* dyd, const float* xd,
                                         const float* h, const float* pre, const float* w1,
                                         const float* w2, const int* off, const FfnShape& s) {
    const int rows = off[s.G] - off[0];
    gemm_grouped_wgrad(dw2, size_t(s.H) * s.D, h, dyd, off, s.G, s.H, s.D);
    bias_grad_grouped(db2, size_t(s.D), dyd, off, s.G, s.D);
    gemm_grouped_rows(dh, dyd, w2, size_t(s.H) * s.D, off, s.G, s.H, s.D, true, 0.0f);
    act_backward(dpre + size_t(off[0]) * s.H1, dh + size_t(off[0]) * s.H,
                 pre + size_t(off[0]) * s.H1, rows, s.H, s.act);
    gemm_grouped_wgrad(dw1, size_t(s.D) * s.H1, xd, dpre, off, s.G, s.D, s.H1);
    bias_grad_grouped(db1, size_t(s.H1), dpre, off, s.G, s.H1);
    gemm_grouped_rows(dxd, dpre, w1, size_t(s.D) * s.H1, off, s.G, s.D, s.H1, true, 0.0f);
}

}  // namespace moe
