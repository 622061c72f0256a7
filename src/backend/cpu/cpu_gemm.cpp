// The CPU backend's matrix products: Eigen products over tiles of the output, OpenMP across tiles.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_internal.h"
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

namespace {

// Appends the tiles of the (rows, cols) output of group g: rows cut into
// ceil(rows / max_rows) parts of equal length (the last may be shorter), columns at kColTile.
void add_tiles(std::vector<CpuBackend::Tile>& tiles, int g, int rows, int cols, int max_rows) {
    const int parts = (rows + max_rows - 1) / max_rows;
    if (parts == 0) return;
    const int len = (rows + parts - 1) / parts;
    for (int r = 0; r < rows; r += len)
        for (int c = 0; c < cols; c += kColTile)
            tiles.push_back({g, r, std::min(rows, r + len), c, std::min(cols, c + kColTile)});
}

// The weights tile tl multiplies (B's rows or columns c0..c1 of its group), as a prefetch cursor.
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

// y = C block (rows r0..r1, cols c0..c1) of group g. A rows are [off[g] + r0, off[g] + r1).
// With a bias (beta is then 0), the tile starts as the bias row instead of Eigen's zero fill.
// Short tiles (cpu_small_gemm.h) take the packing-free kernels and prefetch the next tile's
// weights; when every tile is short, each thread takes a contiguous run of tiles (static
// schedule), so the next tile is most often its own. Either way each tile is computed by one
// thread in one fixed order: the results do not depend on the thread count.
void CpuBackend::run_tiles(float* C, const float* A, const float* B, size_t b_stride,
                           const int* off, int N, int K, bool tb, float beta, const float* bias,
                           size_t bias_stride) {
    const int n_tiles = int(tiles_.size());
    bool all_short = true;
    for (const Tile& tl : tiles_)
        all_short = all_short && small_gemm_fits(tb, tl.r1 - tl.r0, tl.c1 - tl.c0, K);
    auto one = [&](int i) {
        const Tile tl = tiles_[i];
        const int row0 = off[tl.group] + tl.r0, m = tl.r1 - tl.r0, n = tl.c1 - tl.c0;
        const float* Bg = B + size_t(tl.group) * b_stride;
        if (small_gemm_fits(tb, m, n, K)) {
            PrefetchCursor pf;
            if (i + 1 < n_tiles) pf = weights_of(tiles_[i + 1], B, b_stride, N, K, tb);
            small_gemm(C + size_t(row0) * N + tl.c0, size_t(N), A + size_t(row0) * K, size_t(K),
                       tb ? Bg + size_t(tl.c0) * K : Bg + tl.c0, tb ? size_t(K) : size_t(N), m, n,
                       K, tb, beta, bias ? bias + size_t(tl.group) * bias_stride + tl.c0 : nullptr,
                       pf);
            return;
        }
        CMapMat a(A + size_t(row0) * K, m, K, Eigen::OuterStride<>(K));
        MapMat c(C + size_t(row0) * N + tl.c0, m, n, Eigen::OuterStride<>(N));
        if (bias) {
            c.rowwise() = Eigen::Map<const Eigen::RowVectorXf>(
                bias + size_t(tl.group) * bias_stride + tl.c0, n);
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
    };
    for_each_tile(n_tiles, threads_, all_short, one);
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
    auto rows_of = [&](const Tile& tl) { return off[tl.group + 1] - off[tl.group]; };
    bool all_short = true;
    for (const Tile& tl : tiles_)
        all_short = all_short && small_wgrad_fits(rows_of(tl), tl.c1 - tl.c0);
    auto one = [&](int i) {
        const Tile tl = tiles_[i];
        const int row0 = off[tl.group], rows = rows_of(tl);
        const int m = tl.r1 - tl.r0, n = tl.c1 - tl.c0;
        float* Cg = C + size_t(tl.group) * c_stride + size_t(tl.r0) * N + tl.c0;
        if (small_wgrad_fits(rows, n)) {
            PrefetchCursor pf;  // the next tile's block of C
            if (i + 1 < n_tiles) {
                const Tile& nx = tiles_[i + 1];
                pf.base = reinterpret_cast<const char*>(C + size_t(nx.group) * c_stride +
                                                        size_t(nx.r0) * N + nx.c0);
                pf.rows = nx.r1 - nx.r0;
                pf.row_bytes = size_t(nx.c1 - nx.c0) * sizeof(float);
                pf.stride = size_t(N) * sizeof(float);
            }
            small_wgrad(Cg, size_t(N), A + size_t(row0) * M + tl.r0, size_t(M),
                        B + size_t(row0) * N + tl.c0, size_t(N), rows, m, n, pf);
            return;
        }
        CMapMat a(A + size_t(row0) * M + tl.r0, rows, m, Eigen::OuterStride<>(M));
        CMapMat b(B + size_t(row0) * N + tl.c0, rows, n, Eigen::OuterStride<>(N));
        MapMat c(Cg, m, n, Eigen::OuterStride<>(N));
        c.noalias() += a.transpose() * b;
    };
    for_each_tile(n_tiles, threads_, all_short, one);
}

void CpuBackend::bias_grad_grouped(float* dbias, size_t b_stride, const float* dC, const int* off,
                                   int G, int N) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && G > 1)
    for (int g = 0; g < G; ++g) {
        float* db = dbias + size_t(g) * b_stride;
        for (int r = off[g]; r < off[g + 1]; ++r) {
            const float* d = dC + size_t(r) * N;
            for (int j = 0; j < N; ++j) db[j] += d[j];
        }
    }
}

}  // namespace moe::cpu
