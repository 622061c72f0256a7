// The routing ops of the CUDA backend (backend.h, "Routing"); their CPU twins are in
// backend/cpu/cpu_routing.cpp.
//
// Determinism. Row-wise float work (softmax and its backward) runs one warp per row, reduced by a
// butterfly of shuffles (a fixed pattern; both partners of a step add the same two values, so
// every lane ends with the same sum); the log-sum-exp runs one block per row through
// cuda_reduce.cuh's fixed trees. The top-k and its backward run one thread per row, with the
// CPU's serial code, so a selection is the CPU's given the same scores. The column sums run one
// thread per column adding the rows in order in double: the CPU's bits. The gradients of the
// gate-to-slot move, the Switch loss and the z-loss are elementwise, one thread per value.
//
// The plan is built without atomics in its order: the R slots are cut into chunks of kPlanChunk;
// (1) one thread per chunk counts its slots per expert; (2) one block turns the counts into each
// expert's total (routed), the offsets (their exclusive scan) and each chunk's first position in
// each expert's segment; (3) one thread per chunk scatters its slots in slot order from those
// positions. Every segment is then in slot order (a stable counting sort), whatever the timing.
// The by-token index counts assignments per token with integer atomics (a count does not depend
// on their order) and scatters them through atomic cursors, whose order does vary; one thread per
// token then sorts its few assignments by slot, and slots are unique: the result is fixed.
// The window summary (window_observe) takes one thread per token for the per-token values
// (entropy, top-1 probability, squared log-sum-exp, the dropped-token and group flags) into
// scratch, the group table by integer atomics, the importance as column sums in chunks of
// kColumnChunk rows, then one block that adds the chunks in order and the per-token values by a
// fixed tree: equal bits run to run.
#include <cfloat>
#include <cmath>

#include "backend/check.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_reduce.cuh"
#include "backend/plan_row.h"
#include "backend/topk_row.h"

namespace moe::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;  // softmax: one warp per row
constexpr int kPlanChunk = 256;                  // slots per chunk of the plan build
constexpr int kTopkMaxK = kTopkRowMaxK;          // backend.h: K <= 64

__device__ float warp_max(float v) {
    for (int w = kWarp / 2; w > 0; w /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, w));
    return v;
}
__device__ float warp_sum(float v) {
    for (int w = kWarp / 2; w > 0; w /= 2) v += __shfl_xor_sync(0xffffffffu, v, w);
    return v;
}

// exp(x), 0 below the smallest normal float (as vec_exp_shifted on the CPU).
__device__ float exp_flushed(float x) {
    const float e = expf(x);
    return e >= FLT_MIN ? e : 0.0f;
}

unsigned row_blocks(int T) {
    return unsigned((T + kRowsPerBlock - 1) / kRowsPerBlock);
}
unsigned thread_blocks(long long n) {
    return unsigned((n + kThreads - 1) / kThreads);
}

__global__ void softmax_rows_kernel(float* p, const float* z, int T, int N, int ldz) {
    const int t = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (t >= T) return;  // the whole warp: its shuffles stay complete
    const float* zr = z + size_t(t) * ldz;
    float* pr = p + size_t(t) * N;
    float mx = -INFINITY;
    for (int i = lane; i < N; i += kWarp) mx = fmaxf(mx, zr[i]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int i = lane; i < N; i += kWarp) {
        const float e = exp_flushed(zr[i] - mx);
        pr[i] = e;
        sum += e;
    }
    sum = warp_sum(sum);
    for (int i = lane; i < N; i += kWarp) pr[i] = pr[i] / sum;
}

__global__ void softmax_rows_backward_kernel(float* d, const float* p, int T, int N, int ldd) {
    const int t = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (t >= T) return;
    float* dr = d + size_t(t) * ldd;
    const float* pr = p + size_t(t) * N;
    float dot = 0.0f;
    for (int i = lane; i < N; i += kWarp) dot += dr[i] * pr[i];
    dot = warp_sum(dot);
    for (int i = lane; i < N; i += kWarp) dr[i] = pr[i] * (dr[i] - dot);
}

// topk_row (backend/topk_row.h, the CPU's code), one thread per row.
__global__ void topk_rows_kernel(int* sel_all, float* gate_all, const float* s_all,
                                 const float* bias, int T, int N, int K, bool normalize,
                                 float scale) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    topk_row(sel_all + size_t(t) * K, gate_all + size_t(t) * K, s_all + size_t(t) * N, bias, N, K,
             normalize, scale, nullptr, 1);
}

// topk_row_backward, one thread per row.
__global__ void topk_rows_backward_kernel(float* ds_all, const float* s_all, const int* sel_all,
                                          const float* dg_all, int T, int N, int K, bool normalize,
                                          float scale, int ldds) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    topk_row_backward(ds_all + size_t(t) * ldds, s_all + size_t(t) * N, sel_all + size_t(t) * K,
                      dg_all + size_t(t) * K, K, normalize, scale);
}

// Plan build, pass 1: counts[c * N + e] = the slots of chunk c routed to e (counts zeroed).
__global__ void plan_count_kernel(int* counts, const int* expert, int R, int N, int chunks) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= chunks) return;
    int* row = counts + size_t(c) * N;
    const int s1 = min(R, (c + 1) * kPlanChunk);
    for (int s = c * kPlanChunk; s < s1; ++s)
        if (expert[s] >= 0) row[expert[s]]++;
}

// Plan build, pass 2 (one block): routed[e] = sum over chunks; offsets = its exclusive scan;
// counts[c * N + e] becomes chunk c's first position in expert e's segment.
__global__ void plan_scan_kernel(int* offsets, int* routed, int* counts, int chunks, int N) {
    for (int e = threadIdx.x; e < N; e += blockDim.x) {
        int acc = 0;
        for (int c = 0; c < chunks; ++c) {
            const int v = counts[size_t(c) * N + e];
            counts[size_t(c) * N + e] = acc;
            acc += v;
        }
        routed[e] = acc;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0;
        for (int e = 0; e < N; ++e) {
            offsets[e] = acc;
            acc += routed[e];
        }
        offsets[N] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < N; e += blockDim.x) {
        const int base = offsets[e];
        for (int c = 0; c < chunks; ++c) counts[size_t(c) * N + e] += base;
    }
}

// Plan build, pass 3: each chunk scatters its slots in slot order from its cursors.
__global__ void plan_scatter_kernel(int* token, float* gate, int* slot, int* cursors,
                                    const int* expert, const float* slot_gate,
                                    const int* slot_token, int R, int per_token, int N,
                                    int chunks) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= chunks) return;
    int* cur = cursors + size_t(c) * N;
    const int s1 = min(R, (c + 1) * kPlanChunk);
    for (int s = c * kPlanChunk; s < s1; ++s) {
        const int e = expert[s];
        if (e < 0) continue;
        const int a = cur[e]++;
        token[a] = slot_token ? slot_token[s] : s / per_token;
        gate[a] = slot_gate[s];
        slot[a] = s;
    }
}

// Capacity, pass 1 (one thread): the kept counts' offsets and the dropped counts.
__global__ void capacity_offsets_kernel(int* offsets, int* dropped, const int* old, int N,
                                        long long C) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    int w = 0;
    for (int e = 0; e < N; ++e) {
        const int n = old[e + 1] - old[e];
        const int kept = n < C ? n : int(C);
        offsets[e] = w;
        dropped[e] = n - kept;
        w += kept;
    }
    offsets[N] = w;
}

// The expert of assignment a of a plan with offsets old (N+1): the last e with old[e] <= a.
__device__ int segment_of(const int* old, int N, int a) {
    int lo = 0, hi = N - 1;  // old[lo] <= a always (old[0] = 0)
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (old[mid] <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// Capacity, pass 2: assignment a of the old plan (its expert e found by binary search: the last
// e with old[e] <= a) is kept at offsets[e] + j when its position j in the segment is below C.
__global__ void capacity_scatter_kernel(int* token, float* gate, int* slot, const int* offsets,
                                        const int* old, const int* old_token, const float* old_gate,
                                        const int* old_slot, int N, long long C, int A_max) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= A_max || a >= old[N]) return;
    const int lo = segment_of(old, N, a);
    const int j = a - old[lo];
    if (j >= C) return;
    const int dst = offsets[lo] + j;
    token[dst] = old_token[a];
    gate[dst] = old_gate[a];
    slot[dst] = old_slot[a];
}

// Capacity by score, pass 2: keep[a] = 1 when fewer than C assignments of a's segment come
// before it in the order (gate descending, then slot ascending).
__global__ void score_keep_kernel(int* keep, const int* old, const float* gate, const int* slot,
                                  int N, long long C, int A_max) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= A_max || a >= old[N]) return;
    const int e = segment_of(old, N, a);
    const float ga = gate[a];
    const int sa = slot[a];
    long long better = 0;
    for (int b = old[e]; b < old[e + 1] && better < C; ++b)
        better += gate[b] > ga || (gate[b] == ga && slot[b] < sa);
    keep[a] = better < C ? 1 : 0;
}

// Capacity by score, pass 3: a kept assignment goes to offsets[e] + the kept ones before it in
// its segment (slot order).
__global__ void score_scatter_kernel(int* token, float* gate, int* slot, const int* offsets,
                                     const int* keep, const int* old, const int* old_token,
                                     const float* old_gate, const int* old_slot, int N, int A_max) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= A_max || a >= old[N] || !keep[a]) return;
    const int e = segment_of(old, N, a);
    int before = 0;
    for (int b = old[e]; b < a; ++b) before += keep[b];
    const int dst = offsets[e] + before;
    token[dst] = old_token[a];
    gate[dst] = old_gate[a];
    slot[dst] = old_slot[a];
}

// By-token index, pass 1: counts per token into tok_offsets[t + 1] (zeroed before).
__global__ void token_count_kernel(int* tok_offsets, const int* token, const int* offsets, int N,
                                   int A_max) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= A_max || a >= offsets[N]) return;
    atomicAdd(&tok_offsets[token[a] + 1], 1);
}

// In-place inclusive prefix sum of x[0..n) by one block: each thread sums a contiguous piece,
// thread 0 scans the pieces' totals, each thread then rewrites its piece.
__global__ void inclusive_scan_kernel(int* x, int n) {
    __shared__ int part[kThreads];
    const int piece = (n + kThreads - 1) / kThreads;
    const int i0 = min(n, int(threadIdx.x) * piece), i1 = min(n, i0 + piece);
    int acc = 0;
    for (int i = i0; i < i1; ++i) acc += x[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int k = 0; k < kThreads; ++k) {
            const int v = part[k];
            part[k] = run;
            run += v;
        }
    }
    __syncthreads();
    int run = part[threadIdx.x];
    for (int i = i0; i < i1; ++i) {
        run += x[i];
        x[i] = run;
    }
}

// By-token index, pass 2: each assignment to a free place of its token (order varies).
__global__ void token_scatter_kernel(int* tok_assign, int* cursor, const int* token,
                                     const int* offsets, int N, int A_max) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= A_max || a >= offsets[N]) return;
    tok_assign[atomicAdd(&cursor[token[a]], 1)] = a;
}

// By-token index, pass 3: each token's assignments sorted by slot (plan_row.h, the CPU's code).
__global__ void token_sort_kernel(int* tok_assign, const int* tok_offsets, const int* slot, int T) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    sort_by_slot(tok_assign + tok_offsets[t], tok_offsets[t + 1] - tok_offsets[t], slot);
}

// d_slot[slot[a]] = d_gate[a] for each assignment (d_slot zeroed before; one writer per slot).
__global__ void gate_to_slots_kernel(float* d_slot, const float* d_gate, const int* slot,
                                     const int* offsets, int N, int R) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= R || a >= offsets[N]) return;
    d_slot[slot[a]] = d_gate[a];
}

// The CPU's host_switch_loss_grad, one thread per value (the same expression: equal bits).
__global__ void switch_grad_kernel(float* d_probs, const int* routed, int T, int N, int K,
                                   float coef) {
    const size_t n = size_t(T) * N;
    for (size_t k = blockIdx.x * size_t(blockDim.x) + threadIdx.x; k < n;
         k += size_t(gridDim.x) * blockDim.x) {
        const int i = int(k % size_t(N));
        const float c = float(coef * N * (double(routed[i]) / (double(T) * K)) / T);
        d_probs[k] += c;
    }
}

// The CPU's host_z_loss_grad_row, one thread per value (expf in place of the vectorised exp).
__global__ void z_grad_kernel(float* d, const float* x, const double* lse, int T, int N, int ldx,
                              int ldd, float coef) {
    const size_t n = size_t(T) * N;
    for (size_t k = blockIdx.x * size_t(blockDim.x) + threadIdx.x; k < n;
         k += size_t(gridDim.x) * blockDim.x) {
        const int t = int(k / size_t(N)), i = int(k % size_t(N));
        const double l = lse[t];
        const double c = coef * 2.0 * l / T;
        const float e = exp_flushed(x[size_t(t) * ldx + i] - float(l));
        d[size_t(t) * ldd + i] += float(c * e);
    }
}

// One block per row: the max by a fixed tree, the exponentials' sum in double by a fixed tree.
__global__ void logsumexp_rows_kernel(double* lse, const float* x, int T, int N, int ldx) {
    __shared__ float sf[kThreads];
    __shared__ double sd[kThreads];
    const int t = blockIdx.x;
    if (t >= T) return;
    const float* xr = x + size_t(t) * ldx;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < N; i += kThreads) mx = fmaxf(mx, xr[i]);
    mx = block_max(mx, sf);
    double sum = 0.0;
    for (int i = threadIdx.x; i < N; i += kThreads) sum += double(exp_flushed(xr[i] - mx));
    sum = block_sum(sum, sd);
    if (threadIdx.x == 0) lse[t] = double(mx) + log(sum);
}

// One thread per column, the rows in order (the CPU's order and bits).
__global__ void column_sums_kernel(double* sums, const float* x, int T, int N) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    double acc = 0.0;
    for (int t = 0; t < T; ++t) acc += double(x[size_t(t) * N + i]);
    sums[i] = acc;
}

// The window summary (window_observe). Pass 1, one thread per row t: -sum_i p ln p (the float
// terms in double, in i order), max_i p, the squared log-sum-exp of the logits (the arithmetic
// of logsumexp_rows_kernel, serial over the row), whether the token kept no assignment and
// whether it entered the group table; the table's cell by an integer atomic (exact in any order).
__global__ void window_rows_kernel(double* row_sums, int* row_flags, long long* table,
                                   const int* tok_offsets, const float* probs, const float* logits,
                                   const int* groups, int num_groups, int T, int N) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    double ent = 0.0, top1 = 0.0, lse2 = 0.0;
    int no_assignment = 0, grouped = 0;
    if (tok_offsets != nullptr) no_assignment = tok_offsets[t + 1] == tok_offsets[t];
    if (probs != nullptr) {
        const float* p = probs + size_t(t) * N;
        int best = 0;
        for (int i = 0; i < N; ++i) {
            const float v = p[i];
            ent -= double(v > 0.0f ? v * logf(v) : 0.0f);
            if (v > p[best]) best = i;
        }
        top1 = double(p[best]);
        if (groups != nullptr) {
            const int g = groups[t];
            if (g >= 0 && g < num_groups) {
                atomicAdd(reinterpret_cast<unsigned long long*>(table) + size_t(g) * N + best,
                          1ull);
                grouped = 1;
            }
        }
    }
    if (logits != nullptr) {
        const float* l = logits + size_t(t) * N;
        float mx = -INFINITY;
        for (int i = 0; i < N; ++i) mx = fmaxf(mx, l[i]);
        double sum = 0.0;
        for (int i = 0; i < N; ++i) sum += double(exp_flushed(l[i] - mx));
        const double lse = double(mx) + log(sum);
        lse2 = lse * lse;
    }
    row_sums[size_t(t)] = ent;
    row_sums[size_t(T) + t] = top1;
    row_sums[2 * size_t(T) + t] = lse2;
    row_flags[size_t(t)] = no_assignment;
    row_flags[size_t(T) + t] = grouped;
}

// Pass 1 of the importance: part[c][j] = sum over the rows of chunk c (kColumnChunk rows) of
// p[t, j], in row order, in double.
__global__ void window_importance_kernel(double* part, const float* probs, int T, int N,
                                         int chunks) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    for (int c = blockIdx.y; c < chunks; c += gridDim.y) {
        const int r0 = c * kColumnChunk, r1 = min(T, r0 + kColumnChunk);
        double acc = 0.0;
        for (int r = r0; r < r1; ++r) acc += double(probs[size_t(r) * N + j]);
        part[size_t(c) * N + j] = acc;
    }
}

// Pass 2, one block: the per-expert counts, the importance chunks in chunk order, the row values
// by a fixed tree (each thread adds rows tid, tid + kThreads, ... in order, then block_sum), and
// the scalars (thread 0).
// c_routed, c_dropped: the summary's (N) counts; scalars: its Count scalars; sums: importance
// (N) then the Sum scalars (the offsets of Backend::WindowSummary, taken on the host).
__global__ void window_add_kernel(long long* c_routed, long long* c_dropped, long long* scalars,
                                  double* sums, long long* interval, const int* routed,
                                  const int* dropped, const double* row_sums, const int* row_flags,
                                  const double* part, int chunks, const double* losses, int T,
                                  int N, int num_groups, bool has_probs, bool has_logits,
                                  bool has_tok, bool has_groups) {
    __shared__ double sd[kThreads];
    __shared__ long long sl[kThreads];
    using W = Backend::WindowSummary;
    long long slots = 0;
    for (int i = threadIdx.x; i < N; i += kThreads) {
        c_routed[i] += routed[i];
        if (dropped != nullptr) c_dropped[i] += dropped[i];
        if (interval != nullptr) interval[i] += routed[i];
        slots += routed[i];
        if (has_probs && T > 0) {
            double acc = 0.0;
            for (int c = 0; c < chunks; ++c) acc += part[size_t(c) * N + i];
            sums[i] += acc;
        }
    }
    slots = block_sum(slots, sl);
    double v[3] = {0.0, 0.0, 0.0};
    long long f[2] = {0, 0};
    for (int t = threadIdx.x; t < T; t += kThreads) {
        for (int k = 0; k < 3; ++k) v[k] += row_sums[size_t(k) * T + t];
        for (int k = 0; k < 2; ++k) f[k] += row_flags[size_t(k) * T + t];
    }
    for (int k = 0; k < 3; ++k) v[k] = block_sum(v[k], sd);
    for (int k = 0; k < 2; ++k) f[k] = block_sum(f[k], sl);
    if (threadIdx.x != 0) return;
    auto count = [&](W::Count c) -> long long& { return scalars[int(c)]; };
    double* sum = sums + N;
    count(W::slots) += slots;
    count(W::tokens) += T;
    if (has_tok) count(W::dropped_tokens) += f[0];
    if (has_probs) {
        sum[W::entropy] += v[0];
        sum[W::top1] += v[1];
        count(W::prob_tokens) += T;
        if (has_groups) {
            count(W::num_groups) = max(count(W::num_groups), (long long)num_groups);
            count(W::group_tokens) += f[1];
        }
    }
    if (has_logits && N > 0) {
        sum[W::lse2] += v[2];
        count(W::logit_tokens) += T;
    }
    if (losses != nullptr) {
        sum[W::aux] += losses[0];
        sum[W::z] += losses[1];
    }
    count(W::batches) += 1;
}

}  // namespace

void* CudaBackend::routing_scratch(size_t bytes) {
    if (bytes > route_cap_) {
        release(route_);
        route_ = nullptr;
        route_cap_ = 0;
        route_ = alloc(bytes);
        route_cap_ = bytes;
    }
    return route_;
}

void CudaBackend::softmax_rows(float* p, const float* z, int T, int N, int ldz) {
    if (T <= 0 || N <= 0) return;
    softmax_rows_kernel<<<row_blocks(T), kThreads>>>(p, z, T, N, ldz);
    MOESIM_CUDA_LAUNCHED(softmax_rows_kernel);
}

void CudaBackend::softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) {
    if (T <= 0 || N <= 0) return;
    softmax_rows_backward_kernel<<<row_blocks(T), kThreads>>>(d, p, T, N, ldd);
    MOESIM_CUDA_LAUNCHED(softmax_rows_backward_kernel);
}

void CudaBackend::topk_rows(int* sel, float* gate, const float* s, const float* bias, int T, int N,
                            int K, bool normalize, float scale) {
    MOESIM_CHECK(K >= 1 && K <= N && K <= kTopkMaxK, "topk_rows: K outside [1, min(N, 64)]");
    if (T <= 0) return;
    topk_rows_kernel<<<thread_blocks(T), kThreads>>>(sel, gate, s, bias, T, N, K, normalize, scale);
    MOESIM_CUDA_LAUNCHED(topk_rows_kernel);
}

void CudaBackend::topk_rows_backward(float* ds, const float* s, const int* sel, const float* dg,
                                     int T, int N, int K, bool normalize, float scale, int ldds) {
    if (T <= 0 || K <= 0) return;
    topk_rows_backward_kernel<<<thread_blocks(T), kThreads>>>(ds, s, sel, dg, T, N, K, normalize,
                                                              scale, ldds);
    MOESIM_CUDA_LAUNCHED(topk_rows_backward_kernel);
}

void CudaBackend::plan_build(int* offsets, int* token, float* gate, int* slot, int* routed,
                             const int* expert, const float* slot_gate, const int* slot_token,
                             int R, int per_token, int N) {
    if (N <= 0) return;
    const int chunks = (R + kPlanChunk - 1) / kPlanChunk;
    int* counts = nullptr;
    if (chunks > 0) {
        const size_t bytes = size_t(chunks) * size_t(N) * sizeof(int);
        counts = static_cast<int*>(routing_scratch(bytes));
        fill_zero(counts, bytes);
        plan_count_kernel<<<thread_blocks(chunks), kThreads>>>(counts, expert, R, N, chunks);
        MOESIM_CUDA_LAUNCHED(plan_count_kernel);
    }
    plan_scan_kernel<<<1, kThreads>>>(offsets, routed, counts, chunks, N);
    MOESIM_CUDA_LAUNCHED(plan_scan_kernel);
    if (chunks == 0) return;
    plan_scatter_kernel<<<thread_blocks(chunks), kThreads>>>(
        token, gate, slot, counts, expert, slot_gate, slot_token, R, per_token, N, chunks);
    MOESIM_CUDA_LAUNCHED(plan_scatter_kernel);
}

void CudaBackend::capacity_position(int* offsets, int* token, float* gate, int* slot, int* dropped,
                                    int N, int64_t C, int A_max) {
    MOESIM_CHECK(C >= 1, "capacity_position: C < 1");
    if (N <= 0) return;
    // the old plan's offsets, tokens, gates and slots, then the compacted plan over them
    const size_t n_off = size_t(N) + 1, n_a = size_t(A_max > 0 ? A_max : 0);
    char* scratch = static_cast<char*>(
        routing_scratch(n_off * sizeof(int) + n_a * (2 * sizeof(int) + sizeof(float))));
    int* old = reinterpret_cast<int*>(scratch);
    int* old_token = old + n_off;
    int* old_slot = old_token + n_a;
    float* old_gate = reinterpret_cast<float*>(old_slot + n_a);
    copy(old, offsets, n_off * sizeof(int));
    if (n_a) {
        copy(old_token, token, n_a * sizeof(int));
        copy(old_slot, slot, n_a * sizeof(int));
        copy(old_gate, gate, n_a * sizeof(float));
    }
    capacity_offsets_kernel<<<1, 1>>>(offsets, dropped, old, N, (long long)C);
    MOESIM_CUDA_LAUNCHED(capacity_offsets_kernel);
    if (!n_a) return;
    capacity_scatter_kernel<<<thread_blocks((long long)n_a), kThreads>>>(
        token, gate, slot, offsets, old, old_token, old_gate, old_slot, N, (long long)C, A_max);
    MOESIM_CUDA_LAUNCHED(capacity_scatter_kernel);
}

void CudaBackend::capacity_score(int* offsets, int* token, float* gate, int* slot, int* dropped,
                                 int N, int64_t C, int A_max) {
    MOESIM_CHECK(C >= 1, "capacity_score: C < 1");
    if (N <= 0) return;
    const size_t n_off = size_t(N) + 1, n_a = size_t(A_max > 0 ? A_max : 0);
    char* scratch = static_cast<char*>(
        routing_scratch(n_off * sizeof(int) + n_a * (3 * sizeof(int) + sizeof(float))));
    int* old = reinterpret_cast<int*>(scratch);
    int* old_token = old + n_off;
    int* old_slot = old_token + n_a;
    int* keep = old_slot + n_a;
    float* old_gate = reinterpret_cast<float*>(keep + n_a);
    copy(old, offsets, n_off * sizeof(int));
    if (n_a) {
        copy(old_token, token, n_a * sizeof(int));
        copy(old_slot, slot, n_a * sizeof(int));
        copy(old_gate, gate, n_a * sizeof(float));
        score_keep_kernel<<<thread_blocks((long long)n_a), kThreads>>>(
            keep, old, old_gate, old_slot, N, (long long)C, A_max);
        MOESIM_CUDA_LAUNCHED(score_keep_kernel);
    }
    capacity_offsets_kernel<<<1, 1>>>(offsets, dropped, old, N, (long long)C);
    MOESIM_CUDA_LAUNCHED(capacity_offsets_kernel);
    if (!n_a) return;
    score_scatter_kernel<<<thread_blocks((long long)n_a), kThreads>>>(
        token, gate, slot, offsets, keep, old, old_token, old_gate, old_slot, N, A_max);
    MOESIM_CUDA_LAUNCHED(score_scatter_kernel);
}

void CudaBackend::plan_index_by_token(int* tok_offsets, int* tok_assign, const int* token,
                                      const int* slot, const int* offsets, int N, int T,
                                      int A_max) {
    if (T <= 0) return;
    fill_zero(tok_offsets, (size_t(T) + 1) * sizeof(int));
    if (A_max <= 0) return;
    token_count_kernel<<<thread_blocks(A_max), kThreads>>>(tok_offsets, token, offsets, N, A_max);
    MOESIM_CUDA_LAUNCHED(token_count_kernel);
    inclusive_scan_kernel<<<1, kThreads>>>(tok_offsets + 1, T);
    MOESIM_CUDA_LAUNCHED(inclusive_scan_kernel);
    int* cursor = static_cast<int*>(routing_scratch(size_t(T) * sizeof(int)));
    copy(cursor, tok_offsets, size_t(T) * sizeof(int));
    token_scatter_kernel<<<thread_blocks(A_max), kThreads>>>(tok_assign, cursor, token, offsets, N,
                                                             A_max);
    MOESIM_CUDA_LAUNCHED(token_scatter_kernel);
    token_sort_kernel<<<thread_blocks(T), kThreads>>>(tok_assign, tok_offsets, slot, T);
    MOESIM_CUDA_LAUNCHED(token_sort_kernel);
}

void CudaBackend::gate_grad_to_slots(float* d_slot, const float* d_gate, const int* slot,
                                     const int* offsets, int N, int R) {
    if (R <= 0) return;
    fill_zero(d_slot, size_t(R) * sizeof(float));
    gate_to_slots_kernel<<<thread_blocks(R), kThreads>>>(d_slot, d_gate, slot, offsets, N, R);
    MOESIM_CUDA_LAUNCHED(gate_to_slots_kernel);
}

void CudaBackend::switch_loss_grad(float* d_probs, const int* routed, int T, int N, int K,
                                   float coef) {
    if (T <= 0 || N <= 0) return;
    switch_grad_kernel<<<elementwise_blocks(size_t(T) * N), kThreads>>>(d_probs, routed, T, N, K,
                                                                        coef);
    MOESIM_CUDA_LAUNCHED(switch_grad_kernel);
}

void CudaBackend::z_loss_grad(float* d, const float* x, const double* lse, int T, int N, int ldx,
                              int ldd, float coef) {
    if (T <= 0 || N <= 0) return;
    z_grad_kernel<<<elementwise_blocks(size_t(T) * N), kThreads>>>(d, x, lse, T, N, ldx, ldd, coef);
    MOESIM_CUDA_LAUNCHED(z_grad_kernel);
}

void CudaBackend::logsumexp_rows(double* lse, const float* x, int T, int N, int ldx) {
    if (T <= 0 || N <= 0) return;
    logsumexp_rows_kernel<<<unsigned(T), kThreads>>>(lse, x, T, N, ldx);
    MOESIM_CUDA_LAUNCHED(logsumexp_rows_kernel);
}

void CudaBackend::column_sums(double* sums, const float* x, int T, int N) {
    if (N <= 0) return;
    column_sums_kernel<<<thread_blocks(N), kThreads>>>(sums, x, T, N);
    MOESIM_CUDA_LAUNCHED(column_sums_kernel);
}

void CudaBackend::window_observe(int64_t* counts, double* sums, int64_t* interval,
                                 const int* routed, const int* dropped, const int* tok_offsets,
                                 const float* probs, const float* logits, const int* groups,
                                 int num_groups, const double* losses, int T, int N, int G) {
    static_assert(sizeof(long long) == sizeof(int64_t));
    const bool has_groups = groups != nullptr && probs != nullptr;
    MOESIM_CHECK(!has_groups || (num_groups >= 0 && num_groups <= G), "more groups than sized for");
    if (N <= 0) logits = nullptr;
    const int chunks = probs != nullptr && T > 0 ? column_chunks(T) : 0;
    // Scratch: the row values (3 T doubles), the importance chunks (chunks N doubles), the row
    // flags (2 T ints).
    const size_t n_doubles = 3 * size_t(T) + size_t(chunks) * size_t(N);
    char* scratch = static_cast<char*>(
        routing_scratch(n_doubles * sizeof(double) + 2 * size_t(T) * sizeof(int) + 16));
    double* row_sums = reinterpret_cast<double*>(scratch);
    double* part = row_sums + 3 * size_t(T);
    int* row_flags = reinterpret_cast<int*>(row_sums + n_doubles);
    long long* table =
        reinterpret_cast<long long*>(counts) + Backend::WindowSummary::group_expert(N);
    if (T > 0) {
        window_rows_kernel<<<thread_blocks(T), kThreads>>>(
            row_sums, row_flags, table, tok_offsets, probs, logits, has_groups ? groups : nullptr,
            num_groups, T, N);
        MOESIM_CUDA_LAUNCHED(window_rows_kernel);
    }
    if (chunks > 0 && N > 0) {
        const dim3 grid(thread_blocks(N), unsigned(chunks < 65535 ? chunks : 65535));
        window_importance_kernel<<<grid, kThreads>>>(part, probs, T, N, chunks);
        MOESIM_CUDA_LAUNCHED(window_importance_kernel);
    }
    using W = Backend::WindowSummary;
    long long* c = reinterpret_cast<long long*>(counts);
    window_add_kernel<<<1, kThreads>>>(
        c + W::routed(N), c + W::dropped(N), c + W::count(N, G, W::Count(0)), sums,
        reinterpret_cast<long long*>(interval), routed, dropped, row_sums, row_flags, part, chunks,
        losses, T, N, num_groups, probs != nullptr, logits != nullptr, tok_offsets != nullptr,
        has_groups);
    MOESIM_CUDA_LAUNCHED(window_add_kernel);
}

}  // namespace moe::cuda
