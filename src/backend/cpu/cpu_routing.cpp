// The routing ops of the CPU backend (backend.h, "Routing") and the host functions they share with
// the host routers, capacity and losses (backend/routing_host.h): one copy of the arithmetic, so
// a routing run through the ops on the CPU gives the host router's bits.
#include <algorithm>
#include <vector>

#include "backend/check.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/plan_row.h"
#include "backend/routing_host.h"
#include "backend/topk_row.h"
#include "backend/vec_math.h"

namespace moe {

void host_softmax_rows(float* p, const float* z, int T, int N, int ldz) {
    // Rows in chunks of about 8K scores (a size fixed by N): the exponentials of a whole chunk go
    // through one vectorised call. Each value depends only on its row (vec_math.h), so the chunk
    // size changes no bit.
    const int rows = std::max(1, 8192 / std::max(N, 1));
    for (int t0 = 0; t0 < T; t0 += rows) {
        const int t1 = std::min(T, t0 + rows);
        for (int t = t0; t < t1; ++t) {
            const float* zr = z + size_t(t) * ldz;
            float* pr = p + size_t(t) * N;
            const float mx = vec_max(zr, size_t(N));
            for (int i = 0; i < N; ++i) pr[i] = zr[i] - mx;
        }
        float* pc = p + size_t(t0) * N;
        vec_exp_shifted(pc, pc, 0.0f, size_t(t1 - t0) * N);
        for (int t = t0; t < t1; ++t) {
            float* pr = p + size_t(t) * N;
            const float sum = vec_sum(pr, size_t(N));
            for (int i = 0; i < N; ++i) pr[i] /= sum;
        }
    }
}

void host_softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) {
    for (int t = 0; t < T; ++t) {
        float* dr = d + size_t(t) * ldd;
        const float* pr = p + size_t(t) * N;
        const float dot = vec_dot(dr, pr, size_t(N));
        for (int i = 0; i < N; ++i) dr[i] = pr[i] * (dr[i] - dot);
    }
}

void host_topk_row(int* sel, float* gate, const float* s, const float* bias, int N, int K,
                   bool normalize, float scale, const int* kept, int group_size, const float* gs) {
    topk_row(sel, gate, s, bias, N, K, normalize, scale, kept, group_size, gs);
}

void host_topk_row_backward(float* ds, const float* s, const int* sel, const float* dg, int K,
                            bool normalize, float scale) {
    topk_row_backward(ds, s, sel, dg, K, normalize, scale);
}

int host_plan_build(int* off, int* token, float* gate, int* slot, int* routed, const int* expert,
                    const float* slot_gate, const int* slot_token, int R, int per_token, int N) {
    std::fill_n(routed, N, 0);
    for (int s = 0; s < R; ++s)
        if (expert[s] >= 0) routed[expert[s]]++;
    off[0] = 0;
    for (int i = 0; i < N; ++i) off[i + 1] = off[i] + routed[i];
    // Counting sort by expert, stable in slot order; offsets[i] serve as cursors, then shift back.
    for (int s = 0; s < R; ++s) {
        const int e = expert[s];
        if (e < 0) continue;
        const int a = off[e]++;
        token[a] = slot_token ? slot_token[s] : s / per_token;
        gate[a] = slot_gate[s];
        slot[a] = s;
    }
    for (int i = N; i > 0; --i) off[i] = off[i - 1];
    off[0] = 0;
    return off[N];
}

void host_plan_index_by_token(int* to, int* tok_assign, const int* token, const int* slot, int T,
                              int A, std::vector<int>& cursor) {
    std::fill(to, to + T + 1, 0);
    for (int a = 0; a < A; ++a) to[token[a] + 1]++;
    for (int t = 0; t < T; ++t) to[t + 1] += to[t];
    cursor.assign(to, to + T);
    for (int a = 0; a < A; ++a) tok_assign[cursor[size_t(token[a])]++] = a;
    // Within a token: slot order.
    for (int t = 0; t < T; ++t) sort_by_slot(tok_assign + to[t], to[t + 1] - to[t], slot);
}

int host_capacity_position(int* off, int* token, float* gate, int* slot, int* dropped, int N,
                           int64_t C) {
    int w = 0;  // write cursor of the compacted plan (never past the read position)
    for (int e = 0; e < N; ++e) {
        const int b = off[e], n = off[e + 1] - b;
        const int kept = int(std::min<int64_t>(n, C));
        off[e] = w;
        dropped[e] = n - kept;
        for (int j = 0; j < kept; ++j, ++w) {
            token[w] = token[b + j];
            gate[w] = gate[b + j];
            slot[w] = slot[b + j];
        }
    }
    off[N] = w;
    return w;
}

int host_capacity_score(int* off, int* token, float* gate, int* slot, int* dropped, int N,
                        int64_t C, std::vector<int>& scratch) {
    int w = 0;  // write cursor of the compacted plan (never past the read position)
    auto keep = [&](int a) {
        token[w] = token[a];
        gate[w] = gate[a];
        slot[w] = slot[a];
        ++w;
    };
    for (int e = 0; e < N; ++e) {
        const int b = off[e], n = off[e + 1] - b;
        off[e] = w;
        if (n <= C) {
            dropped[e] = 0;
            for (int j = 0; j < n; ++j) keep(b + j);
            continue;
        }
        dropped[e] = int(n - C);
        // The C largest gates (ties: the earlier slot), then back into slot order.
        scratch.resize(size_t(n));
        for (int j = 0; j < n; ++j) scratch[size_t(j)] = b + j;
        const auto first = scratch.begin(), last = scratch.begin() + n;
        std::sort(first, last, [gate, slot](int x, int y) {
            return gate[x] > gate[y] || (gate[x] == gate[y] && slot[x] < slot[y]);
        });
        std::sort(first, first + C);  // positions = slot order
        for (int j = 0; j < C; ++j) keep(scratch[size_t(j)]);
    }
    off[N] = w;
    return w;
}

void host_gate_grad_to_slots(float* d_slot, const float* d_gate, const int* slot, int A, int R) {
    std::fill_n(d_slot, R, 0.0f);
    for (int a = 0; a < A; ++a) d_slot[slot[a]] = d_gate[a];
}

void host_switch_loss_grad(float* d_probs, const int* routed, int T, int N, int K, float coef,
                           double* c) {
    // d/dp[t,i] of coef * N * sum_i f_i * mean_t p[t,i] = coef * N * f_i / T (the same for every t)
    for (int i = 0; i < N; ++i)
        c[i] = double(float(coef * N * (double(routed[i]) / (double(T) * K)) / T));
    for (int t = 0; t < T; ++t) {
        float* dr = d_probs + size_t(t) * N;
        for (int i = 0; i < N; ++i) dr[i] += float(c[i]);
    }
}

void host_z_loss_grad_row(float* d, const float* x, double lse, int N, float coef, int T) {
    // d/dl_i of coef * lse^2 / T = coef * 2 lse softmax_i / T, softmax_i = exp(l_i - lse)
    constexpr int kBlock = 256;
    float e[kBlock];
    const double c = coef * 2.0 * lse / T;
    const float shift = float(lse);
    for (int b = 0; b < N; b += kBlock) {
        const int len = std::min(kBlock, N - b);
        vec_exp_shifted(e, x + b, shift, size_t(len));
        for (int i = 0; i < len; ++i) d[b + i] += float(c * e[i]);
    }
}

double host_switch_loss_value(const int* routed, const double* colsum, int T, int N, int K) {
    double loss = 0.0;
    for (int i = 0; i < N; ++i) loss += double(routed[i]) / (double(T) * K) * (colsum[i] / T);
    return N * loss;
}

double host_add_squares(double total, const double* v, int n) {
    for (int r = 0; r < n; ++r) total += v[r] * v[r];
    return total;
}

void host_column_sums(double* sums, const float* x, int T, int N) {
    // Row by row over the row-major (T, N) values; each column still adds t = 0..T-1 in order.
    std::fill_n(sums, N, 0.0);
    for (int t = 0; t < T; ++t) {
        const float* r = x + size_t(t) * N;
        for (int i = 0; i < N; ++i) sums[i] += r[i];
    }
}

void host_window_observe(int64_t* counts, double* sums, int64_t* interval, const int* routed,
                         const int* dropped, const int* tok_offsets, const float* probs,
                         const float* logits, const int* groups, int num_groups, double aux_loss,
                         double z_loss, int T, int N, int G) {
    using W = Backend::WindowSummary;
    int64_t* c_routed = counts + W::routed(N);
    int64_t* c_dropped = counts + W::dropped(N);
    int64_t* table = counts + W::group_expert(N);
    auto count = [&](W::Count c) -> int64_t& { return counts[W::count(N, G, c)]; };
    auto sum = [&](W::Sum s) -> double& { return sums[W::sum(N, s)]; };

    // Counts: A[i], D[i]; the routed total (T k for token choice); tokens with no processed
    // assignment.
    for (int i = 0; i < N; ++i) {
        c_routed[i] += routed[i];
        if (dropped != nullptr) c_dropped[i] += dropped[i];
        count(W::slots) += routed[i];
        if (interval != nullptr) interval[i] += routed[i];
    }
    count(W::tokens) += T;
    if (tok_offsets != nullptr)  // a dense plan mixes every token into its slots
        for (int t = 0; t < T; ++t)
            if (tok_offsets[t + 1] == tok_offsets[t]) ++count(W::dropped_tokens);

    // Router probabilities p: (T, N): entropy, top-1 probability, importance. The entropy's
    // terms p ln p are summed over the whole (T, N) block: only their total over tokens is kept.
    constexpr size_t kBlock = 256;
    if (probs != nullptr) {
        float xlogx[kBlock];
        const size_t TN = size_t(T) * N;
        for (size_t b = 0; b < TN; b += kBlock) {
            const size_t len = std::min(kBlock, TN - b);
            vec_xlogx(xlogx, probs + b, len);
            sum(W::entropy) -= vec_sum_double(xlogx, len);
        }
        double* importance = sums;  // importance (N) opens the sums
        for (int t = 0; t < T; ++t) {
            const float* p = probs + size_t(t) * N;
            for (int i = 0; i < N; ++i) importance[i] += p[i];
            sum(W::top1) += vec_max(p, size_t(N));
        }
        count(W::prob_tokens) += T;
    }

    // Logits l: (T, N): (logsumexp_i l[t,i])^2.
    if (logits != nullptr && N > 0) {
        double lse[kBlock];
        for (int t0 = 0; t0 < T; t0 += int(kBlock)) {
            const int m = std::min(int(kBlock), T - t0);
            vec_logsumexp_rows(lse, logits + size_t(t0) * N, size_t(m), size_t(N));
            for (int r = 0; r < m; ++r) sum(W::lse2) += lse[r] * lse[r];
        }
        count(W::logit_tokens) += T;
    }

    // Group x top-1 expert table; the top-1 expert is argmax p, ties to the lower index.
    if (groups != nullptr && probs != nullptr) {
        MOESIM_CHECK(num_groups >= 0 && num_groups <= G, "more groups than sized for");
        count(W::num_groups) = std::max(count(W::num_groups), int64_t(num_groups));
        for (int t = 0; t < T; ++t) {
            const int g = groups[t];
            if (g < 0) continue;
            MOESIM_CHECK(g < num_groups, "a group id out of range");
            const float* p = probs + size_t(t) * N;
            int e = 0;
            for (int i = 1; i < N; ++i)
                if (p[i] > p[e]) e = i;
            ++table[size_t(g) * N + size_t(e)];
            ++count(W::group_tokens);
        }
    }

    sum(W::aux) += aux_loss;
    sum(W::z) += z_loss;
    ++count(W::batches);
}

namespace cpu {

namespace {
// Rows per parallel piece of the row-wise ops: fixed by N (never by the threads); every row's
// result depends only on that row.
int rows_per_piece(int N) {
    return std::max(1, 8192 / std::max(N, 1));
}
}  // namespace

void CpuBackend::softmax_rows(float* p, const float* z, int T, int N, int ldz) {
    const int rows = rows_per_piece(N), pieces = (T + rows - 1) / rows;
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 2)
    for (int c = 0; c < pieces; ++c) {
        const int t0 = c * rows, n = std::min(T, t0 + rows) - t0;
        host_softmax_rows(p + size_t(t0) * N, z + size_t(t0) * ldz, n, N, ldz);
    }
}

void CpuBackend::softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) {
    const int rows = rows_per_piece(N), pieces = (T + rows - 1) / rows;
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 2)
    for (int c = 0; c < pieces; ++c) {
        const int t0 = c * rows, n = std::min(T, t0 + rows) - t0;
        host_softmax_rows_backward(d + size_t(t0) * ldd, p + size_t(t0) * N, n, N, ldd);
    }
}

void CpuBackend::topk_rows(int* sel, float* gate, const float* s, const float* bias, int T, int N,
                           int K, bool normalize, float scale) {
    MOESIM_CHECK(K >= 1 && K <= N && K <= kHostTopkMaxK, "topk_rows: K outside [1, min(N, 64)]");
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * N > 16384)
    for (int t = 0; t < T; ++t)
        host_topk_row(sel + size_t(t) * K, gate + size_t(t) * K, s + size_t(t) * N, bias, N, K,
                      normalize, scale);
}

void CpuBackend::topk_rows_backward(float* ds, const float* s, const int* sel, const float* dg,
                                    int T, int N, int K, bool normalize, float scale, int ldds) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * N > 16384)
    for (int t = 0; t < T; ++t)
        host_topk_row_backward(ds + size_t(t) * ldds, s + size_t(t) * N, sel + size_t(t) * K,
                               dg + size_t(t) * K, K, normalize, scale);
}

void CpuBackend::plan_build(int* offsets, int* token, float* gate, int* slot, int* routed,
                            const int* expert, const float* slot_gate, const int* slot_token, int R,
                            int per_token, int N) {
    host_plan_build(offsets, token, gate, slot, routed, expert, slot_gate, slot_token, R, per_token,
                    N);
}

void CpuBackend::capacity_position(int* offsets, int* token, float* gate, int* slot, int* dropped,
                                   int N, int64_t C, int) {
    MOESIM_CHECK(C >= 1, "capacity_position: C < 1");
    host_capacity_position(offsets, token, gate, slot, dropped, N, C);
}

void CpuBackend::capacity_score(int* offsets, int* token, float* gate, int* slot, int* dropped,
                                int N, int64_t C, int) {
    MOESIM_CHECK(C >= 1, "capacity_score: C < 1");
    host_capacity_score(offsets, token, gate, slot, dropped, N, C, index_cursor_);
}

void CpuBackend::plan_index_by_token(int* tok_offsets, int* tok_assign, const int* token,
                                     const int* slot, const int* offsets, int N, int T, int) {
    host_plan_index_by_token(tok_offsets, tok_assign, token, slot, T, offsets[N], index_cursor_);
}

void CpuBackend::gate_grad_to_slots(float* d_slot, const float* d_gate, const int* slot,
                                    const int* offsets, int N, int R) {
    host_gate_grad_to_slots(d_slot, d_gate, slot, offsets[N], R);
}

void CpuBackend::switch_loss_grad(float* d_probs, const int* routed, int T, int N, int K,
                                  float coef) {
    switch_scratch_.resize(size_t(N));
    host_switch_loss_grad(d_probs, routed, T, N, K, coef, switch_scratch_.data());
}

void CpuBackend::z_loss_grad(float* d, const float* x, const double* lse, int T, int N, int ldx,
                             int ldd, float coef) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * N > 16384)
    for (int t = 0; t < T; ++t)
        host_z_loss_grad_row(d + size_t(t) * ldd, x + size_t(t) * ldx, lse[t], N, coef, T);
}

void CpuBackend::logsumexp_rows(double* lse, const float* x, int T, int N, int ldx) {
    if (ldx == N) {
        // Pieces of rows fixed by N; vec_logsumexp_rows gives each row vec_logsumexp's bits.
        const int rows = rows_per_piece(N), pieces = (T + rows - 1) / rows;
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 2)
        for (int c = 0; c < pieces; ++c) {
            const int t0 = c * rows, n = std::min(T, t0 + rows) - t0;
            vec_logsumexp_rows(lse + t0, x + size_t(t0) * N, size_t(n), size_t(N));
        }
        return;
    }
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * N > 16384)
    for (int t = 0; t < T; ++t) lse[t] = vec_logsumexp(x + size_t(t) * ldx, size_t(N));
}

void CpuBackend::column_sums(double* sums, const float* x, int T, int N) {
    host_column_sums(sums, x, T, N);
}

}  // namespace cpu
}  // namespace moe

namespace moe::cpu {

void CpuBackend::window_observe(int64_t* counts, double* sums, int64_t* interval, const int* routed,
                                const int* dropped, const int* tok_offsets, const float* probs,
                                const float* logits, const int* groups, int num_groups,
                                const double* losses, int T, int N, int G) {
    host_window_observe(counts, sums, interval, routed, dropped, tok_offsets, probs, logits, groups,
                        num_groups, losses != nullptr ? losses[0] : 0.0,
                        losses != nullptr ? losses[1] : 0.0, T, N, G);
}

}  // namespace moe::cpu
