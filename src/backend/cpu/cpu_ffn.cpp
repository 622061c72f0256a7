// The fused expert feed-forward ops on the CPU (backend.h): each expert segment's products,
// activation and bias gradients run one after another on one thread, in one parallel region
// across the segments, while the segment's rows are still in cache. The tiles are those of the
// grouped products (cpu_tiles.h), each computed serially, so the results are the same bits as the
// unfused ops at any thread count.
#include <omp.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_tiles.h"

namespace moe::cpu {

// Whole segments per thread balance the work only when no segment is a large share of it: fused
// when one thread runs everything, or when the largest segment is at most half a thread's share
// of the rows; else the unfused ops, which cut large segments into tiles across the threads.
// Either way the results are the same.
bool CpuBackend::ffn_segments(const int* off, int G) {
    const int total = off[G] - off[0];
    int largest = 0;
    for (int g = 0; g < G; ++g) largest = std::max(largest, off[g + 1] - off[g]);
    if (total == 0 || (threads_ > 1 && int64_t(largest) * 2 * threads_ > total)) return false;
    // Largest first: the last segments to start are the short ones.
    seg_order_.resize(size_t(G));
    std::iota(seg_order_.begin(), seg_order_.end(), 0);
    std::stable_sort(seg_order_.begin(), seg_order_.end(),
                     [&](int a, int b) { return off[a + 1] - off[a] > off[b + 1] - off[b]; });
    while (!seg_order_.empty() && off[seg_order_.back() + 1] == off[seg_order_.back()])
        seg_order_.pop_back();
    return true;
}

namespace {

// The first tile of segment g's (rows, N) row-product output, and of its (M, N) weight gradient.
CpuBackend::Tile first_tile(int g, int rows, int N) {
    return {g, 0, std::min(rows, kSegmentRowTile), 0, std::min(N, kColTile)};
}
CpuBackend::Tile first_wgrad_tile(int g, int M, int N) {
    return {g, 0, std::min(M, kRowTile), 0, std::min(N, kColTile)};
}

// The tiles of segment g's (rows, N) output in order, each prefetching the next one's weights,
// the last one `after` (what the segment's next step reads first).
void segment_product(int g, const int* off, float* C, const float* A, const float* B,
                     size_t b_stride, int N, int K, bool tb, const float* bias, size_t bias_stride,
                     PrefetchCursor after) {
    CpuBackend::Tile prev{};
    bool have = false;
    for_segment_tiles(g, off[g + 1] - off[g], N, kSegmentRowTile, [&](const CpuBackend::Tile& t) {
        if (have)
            product_tile(prev, weights_of(t, B, b_stride, N, K, tb), C, A, B, b_stride, off, N, K,
                         tb, 0.0f, bias, bias_stride);
        prev = t;
        have = true;
    });
    if (have) product_tile(prev, after, C, A, B, b_stride, off, N, K, tb, 0.0f, bias, bias_stride);
}

// The tiles of segment g's weight gradient C_g (M, N) in order, the same way.
void segment_wgrad(int g, const int* off, float* C, size_t c_stride, const float* A, const float* B,
                   int M, int N, PrefetchCursor after) {
    CpuBackend::Tile prev{};
    bool have = false;
    for_segment_tiles(g, M, N, kRowTile, [&](const CpuBackend::Tile& t) {
        if (have) wgrad_tile(prev, grad_block_of(t, C, c_stride, N), C, c_stride, A, B, off, M, N);
        prev = t;
        have = true;
    });
    if (have) wgrad_tile(prev, after, C, c_stride, A, B, off, M, N);
}

}  // namespace

void CpuBackend::expert_ffn_forward(float* yd, float* h, float* pre, const float* xd,
                                    const float* w1, const float* b1, const float* w2,
                                    const float* b2, const int* off, const FfnShape& s) {
    if (!ffn_segments(off, s.G)) {
        Backend::expert_ffn_forward(yd, h, pre, xd, w1, b1, w2, b2, off, s);
        return;
    }
    const int n = int(seg_order_.size());
    const size_t w1s = size_t(s.D) * s.H1, w2s = size_t(s.H) * s.D;
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1) if (threads_ > 1 && n > 1)
    for (int i = 0; i < n; ++i) {
        const int g = seg_order_[size_t(i)], r0 = off[g], rows = off[g + 1] - off[g];
        // the weights read next: W2_g after the first product, the next segment's W1 after the
        // second (the next segment in the order, most often this thread's next)
        const PrefetchCursor w2_next =
            weights_of(first_tile(g, rows, s.D), w2, w2s, s.D, s.H, false);
        PrefetchCursor w1_next;
        if (i + 1 < n) {
            const int gn = seg_order_[size_t(i) + 1];
            w1_next =
                weights_of(first_tile(gn, off[gn + 1] - off[gn], s.H1), w1, w1s, s.H1, s.D, false);
        }
        segment_product(g, off, pre, xd, w1, w1s, s.H1, s.D, false, b1, size_t(s.H1), w2_next);
        act_forward_rows(h + size_t(r0) * s.H, pre + size_t(r0) * s.H1, rows, s.H, s.act);
        segment_product(g, off, yd, h, w2, w2s, s.D, s.H, false, b2, size_t(s.D), w1_next);
    }
}

void CpuBackend::expert_ffn_backward(float* dxd, float* dpre, float* dh, float* dw1, float* db1,
                                     float* dw2, float* db2, const float* dyd, const float* xd,
                                     const float* h, const float* pre, const float* w1,
                                     const float* w2, const int* off, const FfnShape& s) {
    if (!ffn_segments(off, s.G)) {
        Backend::expert_ffn_backward(dxd, dpre, dh, dw1, db1, dw2, db2, dyd, xd, h, pre, w1, w2,
                                     off, s);
        return;
    }
    const int n = int(seg_order_.size());
    const size_t w1s = size_t(s.D) * s.H1, w2s = size_t(s.H) * s.D;
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1) if (threads_ > 1 && n > 1)
    for (int i = 0; i < n; ++i) {
        const int g = seg_order_[size_t(i)], r0 = off[g], r1 = off[g + 1], rows = r1 - r0;
        // what each step reads next: W2_g (dh), the block of dW1_g, W1_g (dXd), and the next
        // segment's block of dW2
        PrefetchCursor dw2_next;
        if (i + 1 < n)
            dw2_next =
                grad_block_of(first_wgrad_tile(seg_order_[size_t(i) + 1], s.H, s.D), dw2, w2s, s.D);
        segment_wgrad(g, off, dw2, w2s, h, dyd, s.H, s.D,
                      weights_of(first_tile(g, rows, s.H), w2, w2s, s.H, s.D, true));
        bias_grad_rows(db2 + size_t(g) * s.D, dyd, r0, r1, s.D);
        segment_product(g, off, dh, dyd, w2, w2s, s.H, s.D, true, nullptr, 0,
                        grad_block_of(first_wgrad_tile(g, s.D, s.H1), dw1, w1s, s.H1));
        act_backward_rows(dpre + size_t(r0) * s.H1, dh + size_t(r0) * s.H, pre + size_t(r0) * s.H1,
                          rows, s.H, s.act);
        segment_wgrad(g, off, dw1, w1s, xd, dpre, s.D, s.H1,
                      weights_of(first_tile(g, rows, s.D), w1, w1s, s.D, s.H1, true));
        bias_grad_rows(db1 + size_t(g) * s.H1, dpre, r0, r1, s.H1);
        segment_product(g, off, dxd, dpre, w1, w1s, s.D, s.H1, true, nullptr, 0, dw2_next);
    }
}

}  // namespace moe::cpu
