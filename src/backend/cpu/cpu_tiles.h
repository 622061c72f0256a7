// The tiles of the CPU backend's matrix products, shared by the grouped products (cpu_gemm.cpp)
// and the fused expert feed-forward ops (cpu_ffn.cpp), which compute the same tiles in another
// schedule and so give the same bits.
#pragma once

#include <algorithm>
#include <cstddef>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_small_gemm.h"

namespace moe::cpu {

// Tile sizes depend only on the problem, never on the thread count: that keeps every product
// bit-identical at any number of threads (each tile is one serial Eigen product).
constexpr int kRowTile = 512;
constexpr int kColTile = 256;

// Rows of A per tile in the row products (gemm without ta, gemm_grouped_rows). Each row tile of
// a segment packs that segment's B (an expert's weights) again, so a tile holds a whole segment
// where it can: with capacity factor 1.25, top-2 routing and 16 experts a segment has up to 640
// rows, which 512-row tiles cut into 512 rows plus a thin remainder that packed the weights a
// second time for a few dozen rows. Longer runs of rows are cut into equal parts, not into full
// tiles plus a remainder.
constexpr int kSegmentRowTile = 1024;

// Calls f(tile) for each tile of the (rows, cols) output of group g: rows cut into
// ceil(rows / max_rows) parts of equal length (the last may be shorter), columns at kColTile.
template <class F>
void for_segment_tiles(int g, int rows, int cols, int max_rows, F&& f) {
    const int parts = (rows + max_rows - 1) / max_rows;
    if (parts == 0) return;
    const int len = (rows + parts - 1) / parts;
    for (int r = 0; r < rows; r += len)
        for (int c = 0; c < cols; c += kColTile)
            f(CpuBackend::Tile{g, r, std::min(rows, r + len), c, std::min(cols, c + kColTile)});
}

// What a short tile's kernel prefetches while it computes (cpu_small_gemm.h): the weights of a
// row-product tile (B's rows or columns c0..c1 of its group: N, K and tb as in the product), or
// the block of a weight gradient C that a wgrad tile accumulates into.
PrefetchCursor weights_of(const CpuBackend::Tile& tl, const float* B, size_t b_stride, int N, int K,
                          bool tb);
PrefetchCursor grad_block_of(const CpuBackend::Tile& tl, const float* C, size_t c_stride, int N);

// One tile of gemm_grouped_rows / gemm_grouped_rows_bias (backend.h), computed serially; pf: what
// to prefetch meanwhile (most often the next tile's weights).
void product_tile(const CpuBackend::Tile& tl, PrefetchCursor pf, float* C, const float* A,
                  const float* B, size_t b_stride, const int* off, int N, int K, bool tb,
                  float beta, const float* bias, size_t bias_stride);
// One tile of gemm_grouped_wgrad, computed serially.
void wgrad_tile(const CpuBackend::Tile& tl, PrefetchCursor pf, float* C, size_t c_stride,
                const float* A, const float* B, const int* off, int M, int N);
// One segment of bias_grad_grouped: db (N) += column sums of dC's rows r0..r1, row by row.
void bias_grad_rows(float* db, const float* dC, int r0, int r1, int N);
// act_forward / act_backward over `rows` rows, serially (cpu_backend.cpp); each value's result
// depends only on the values, so any cut of the rows gives the same bits.
void act_forward_rows(float* h, const float* pre, int rows, int H, Activation act);
void act_backward_rows(float* dpre, const float* dh, const float* pre, int rows, int H,
                       Activation act);

}  // namespace moe::cpu
