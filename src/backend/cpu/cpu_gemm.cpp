// The CPU backend's matrix products: Eigen products over tiles of the output (cpu_tiles.h), OpenMP
// across tiles.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_small_gemm.h"
#include "backend/cpu/cpu_tiles.h"

namespace moe::cpu {

namespace {

// Appends the tiles of the (rows, cols) output of group g (for_segment_tiles, cpu_internal.h).
void add_tiles(std::vector<CpuBackend::Tile>& tiles, int g, int rows, int cols, int max_rows) {
    for_segment_tiles(g, rows, cols, max_rows,
                      [&](const CpuBackend::Tile& t) { tiles.push_back(t); });
}

// Runs one(i) for every tile i across the threads: contiguous runs of tiles per thread when
// every tile is short (each prefetches the next, most often its own), else one tile at a time
// to whichever thread is free. Each tile is computed by one thread either way.
template <class F>
void for_each_tile(int n_tiles, int threads, bool all_short, F&& one) {
    const bool par = n_tiles > 1 && threads > 1;
    if (all_short) {
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
        for (int i = 0; i < n_tiles; ++i) one(i);
    } else {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (par)
        for (int i = 0; i < n_tiles; ++i) one(i);
    }
}

}  // namespace

PrefetchCursor weights_of(const CpuBackend::Tile& tl, const float* B, size_t b_stride, int N, int K,
                          bool tb) {
    const float* Bg = B + size_t(tl.group) * b_stride;
    const size_t n = size_t(tl.c1 - tl.c0);
    PrefetchCursor pf;
    if (tb) {  // rows c0..c1 of B (N, K): one contiguous block
        pf.base = reinterpret_cast<const char*>(Bg + size_t(tl.c0) * K);
        pf.rows = 1;
        pf.row_bytes = n * size_t(K) * sizeof(float);
    } else {  // columns c0..c1 of B (K, N): K rows of n values
        pf.base = reinterpret_cast<const char*>(Bg + tl.c0);
        pf.rows = K;
        pf.row_bytes = n * sizeof(float);
        pf.stride = size_t(N) * sizeof(float);
    }
    return pf;
}

PrefetchCursor grad_block_of(const CpuBackend::Tile& tl, const float* C, size_t c_stride, int N) {
    PrefetchCursor pf;
    pf.base =
        reinterpret_cast<const char*>(C + size_t(tl.group) * c_stride + size_t(tl.r0) * N + tl.c0);
    pf.rows = tl.r1 - tl.r0;
    pf.row_bytes = size_t(tl.c1 - tl.c0) * sizeof(float);
    pf.stride = size_t(N) * sizeof(float);
    return pf;
}

// One tile of a grouped row product: rows r0..r1 and columns c0..c1 of group g's output, A's
// rows [off[g] + r0, off[g] + r1). With a bias (beta is then 0), the tile starts as the bias row
// instead of Eigen's zero fill. Short tiles (cpu_small_gemm.h) take the packing-free kernels and
// walk pf meanwhile. The result depends only on the tile's shape.
void product_tile(const CpuBackend::Tile& tl, PrefetchCursor pf, float* C, const float* A,
                  const float* B, size_t b_stride, const int* off, int N, int K, bool tb,
                  float beta, const float* bias, size_t bias_stride) {
    const int row0 = off[tl.group] + tl.r0, m = tl.r1 - tl.r0, n = tl.c1 - tl.c0;
    const float* Bg = B + size_t(tl.group) * b_stride;
    if (small_gemm_fits(tb, m, n, K)) {
        small_gemm(C + size_t(row0) * N + tl.c0, size_t(N), A + size_t(row0) * K, size_t(K),
                   tb ? Bg + size_t(tl.c0) * K : Bg + tl.c0, tb ? size_t(K) : size_t(N), m, n, K,
                   tb, beta, bias ? bias + size_t(tl.group) * bias_stride + tl.c0 : nullptr, pf);
        return;
    }
    CMapMat a(A + size_t(row0) * K, m, K, Eigen::OuterStride<>(K));
    MapMat c(C + size_t(row0) * N + tl.c0, m, n, Eigen::OuterStride<>(N));
    if (bias) {
        c.rowwise() =
            Eigen::Map<const Eigen::RowVectorXf>(bias + size_t(tl.group) * bias_stride + tl.c0, n);
        c.noalias() += a * CMapMat(Bg + tl.c0, K, n, Eigen::OuterStride<>(N));
    } else if (beta == 0.0f) {
        if (tb)
            c.noalias() =
                a * CMapMat(Bg + size_t(tl.c0) * K, n, K, Eigen::OuterStride<>(K)).transpose();
        else
            c.noalias() = a * CMapMat(Bg + tl.c0, K, n, Eigen::OuterStride<>(N));
    } else {
        if (beta != 1.0f) c *= beta;
        if (tb)
            c.noalias() +=
                a * CMapMat(Bg + size_t(tl.c0) * K, n, K, Eigen::OuterStride<>(K)).transpose();
        else
            c.noalias() += a * CMapMat(Bg + tl.c0, K, n, Eigen::OuterStride<>(N));
    }
}

// One tile of a grouped weight gradient: rows r0..r1 and columns c0..c1 of C_g (M, N) += A[rows]ᵀ
// B[rows] over all of group g's rows. Short segments take the packing-free kernel, which walks pf
// meanwhile.
void wgrad_tile(const CpuBackend::Tile& tl, PrefetchCursor pf, float* C, size_t c_stride,
                const float* A, const float* B, const int* off, int M, int N) {
    const int row0 = off[tl.group], rows = off[tl.group + 1] - off[tl.group];
    const int m = tl.r1 - tl.r0, n = tl.c1 - tl.c0;
    float* Cg = C + size_t(tl.group) * c_stride + size_t(tl.r0) * N + tl.c0;
    if (small_wgrad_fits(rows, n)) {
        small_wgrad(Cg, size_t(N), A + size_t(row0) * M + tl.r0, size_t(M),
                    B + size_t(row0) * N + tl.c0, size_t(N), rows, m, n, pf);
        return;
    }
    CMapMat a(A + size_t(row0) * M + tl.r0, rows, m, Eigen::OuterStride<>(M));
    CMapMat b(B + size_t(row0) * N + tl.c0, rows, n, Eigen::OuterStride<>(N));
    MapMat c(Cg, m, n, Eigen::OuterStride<>(N));
    c.noalias() += a.transpose() * b;
}

// db (N) += column sums of dC's rows r0..r1, row after row.
void bias_grad_rows(float* db, const float* dC, int r0, int r1, int N) {
    for (int r = r0; r < r1; ++r) {
        const float* d = dC + size_t(r) * N;
        for (int j = 0; j < N; ++j) db[j] += d[j];
    }
}

// The tiles_ in any order across the threads; each tile is computed by one thread either way
// (for_each_tile), so the results do not depend on the thread count.
void CpuBackend::run_tiles(float* C, const float* A, const float* B, size_t b_stride,
                           const int* off, int N, int K, bool tb, float beta, const float* bias,
                           size_t bias_stride) {
    const int n_tiles = int(tiles_.size());
    bool all_short = true;
    for (const Tile& tl : tiles_)
        all_short = all_short && small_gemm_fits(tb, tl.r1 - tl.r0, tl.c1 - tl.c0, K);
    for_each_tile(n_tiles, threads_, all_short, [&](int i) {
        const PrefetchCursor pf = i + 1 < n_tiles
                                      ? weights_of(tiles_[size_t(i) + 1], B, b_stride, N, K, tb)
                                      : PrefetchCursor{};
        product_tile(tiles_[size_t(i)], pf, C, A, B, b_stride, off, N, K, tb, beta, bias,
                     bias_stride);
    });
}

void CpuBackend::gemm_grouped_rows(float* C, const float* A, const float* B, size_t b_stride,
                                   const int* off, int G, int N, int K, bool tb, float beta) {
    tiles_.clear();
    for (int g = 0; g < G; ++g) add_tiles(tiles_, g, off[g + 1] - off[g], N, kSegmentRowTile);
    run_tiles(C, A, B, b_stride, off, N, K, tb, beta, nullptr, 0);
}

void CpuBackend::gemm_grouped_rows_bias(float* C, const float* A, const float* B, size_t b_stride,
                                        const float* bias, size_t bias_stride, const int* off,
                                        int G, int N, int K) {
    tiles_.clear();
    for (int g = 0; g < G; ++g) add_tiles(tiles_, g, off[g + 1] - off[g], N, kSegmentRowTile);
    run_tiles(C, A, B, b_stride, off, N, K, false, 0.0f, bias, bias_stride);
}

void CpuBackend::gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                      bool tb, float beta) {
    if (!ta) {
        const int off[2] = {0, M};
        gemm_grouped_rows(C, A, B, 0, off, 1, N, K, tb, beta);
        return;
    }
    // C (M,N) = Aᵀ · op(B) with A stored (K,M): tiles of C, each a full sum over K.
    tiles_.clear();
    add_tiles(tiles_, 0, M, N, kRowTile);
    const int n_tiles = int(tiles_.size());
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1) if (n_tiles > 1 && threads_ > 1)
    for (int i = 0; i < n_tiles; ++i) {
        const Tile tl = tiles_[i];
        const int m = tl.r1 - tl.r0, n = tl.c1 - tl.c0;
        CMapMat at(A + tl.r0, K, m, Eigen::OuterStride<>(M));
        MapMat c(C + size_t(tl.r0) * N + tl.c0, m, n, Eigen::OuterStride<>(N));
        if (beta == 0.0f)
            c.setZero();
        else if (beta != 1.0f)
            c *= beta;
        if (tb)
            c.noalias() +=
                at.transpose() *
                CMapMat(B + size_t(tl.c0) * K, n, K, Eigen::OuterStride<>(K)).transpose();
        else
            c.noalias() += at.transpose() * CMapMat(B + tl.c0, K, n, Eigen::OuterStride<>(N));
    }
}

void CpuBackend::gemm_grouped_wgrad(float* C, size_t c_stride, const float* A, const float* B,
                                    const int* off, int G, int M, int N) {
    tiles_.clear();
    // Here rows are C_g's M rows (weight rows), not the segment's: a row tile repacks only the
    // segment's rows of B, activations rather than weights, so it stays at kRowTile.
    for (int g = 0; g < G; ++g)
        if (off[g + 1] > off[g]) add_tiles(tiles_, g, M, N, kRowTile);
    const int n_tiles = int(tiles_.size());
    bool all_short = true;
    for (const Tile& tl : tiles_)
        all_short = all_short && small_wgrad_fits(off[tl.group + 1] - off[tl.group], tl.c1 - tl.c0);
    for_each_tile(n_tiles, threads_, all_short, [&](int i) {
        const PrefetchCursor pf = i + 1 < n_tiles
                                      ? grad_block_of(tiles_[size_t(i) + 1], C, c_stride, N)
                                      : PrefetchCursor{};
        wgrad_tile(tiles_[size_t(i)], pf, C, c_stride, A, B, off, M, N);
    });
}

void CpuBackend::bias_grad_grouped(float* dbias, size_t b_stride, const float* dC, const int* off,
                                   int G, int N) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && G > 1)
    for (int g = 0; g < G; ++g)
        bias_grad_rows(dbias + size_t(g) * b_stride, dC, off[g], off[g + 1], N);
}

}  // namespace moe::cpu
