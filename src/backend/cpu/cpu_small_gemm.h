// Products for short expert segments: C (m, n) = A (m, K) · op(B) for m up to kShortRows, with
// no packing and with the NEXT tile's weights prefetched while this one is multiplied.
//
// Why: with many experts each expert sees a few rows (512 experts, top-2, 4096 tokens: ~12),
// and its weights (128 KB at d_model 128, d_ff 256) are read once per product. Measured on a
// Zen 4 core (docs/performance.md, "Short segments"): Eigen's product over 512 such segments
// ran at ~27 GFLOP/s; the same products with every expert's weights already in cache at ~56-64,
// so the time goes to waiting for the weights, not to arithmetic. The hardware prefetchers do
// not run ahead across experts; here every step of the inner loop issues one software prefetch
// of the next tile's weights, so they arrive while this tile computes.
//
// Summation order: each C element is a sum over k in increasing k (nn), or over k in 8 lanes
// then a fixed lane tree (nt): it depends only on the shapes, never on the threads.
#pragma once

#include <cstddef>

namespace moe::cpu {

// Segments of at most this many rows take these kernels (longer ones Eigen's packed product,
// which is faster once the packing is shared by enough rows: the two cross near 30 rows).
constexpr int kShortRows = 24;

// One tile's weights to prefetch, walked one 64-byte line per call of next(): rows of
// row_bytes each, stride bytes apart. A null base prefetches nothing.
struct PrefetchCursor {
    const char* base = nullptr;
    size_t row_bytes = 0, stride = 0;
    int rows = 0;
    int row = 0;
    size_t col = 0;
};

// True where these kernels are compiled (x86 with AVX2 and FMA) and take the shape: nn needs
// n % 16 == 0, nt needs n % 4 == 0 and K % 8 == 0.
bool small_gemm_fits(bool tb, int m, int n, int K);

// C (m, n; row stride ldc) = seed + A (m, K; row stride lda) · B, where B is (K, n) with row
// stride ldb (tb false), or Bᵀ with B (n, K) with row stride ldb (tb true). seed: the bias row
// (bias, n values) when bias is not null; else beta · C (beta 0: nothing, C not read).
void small_gemm(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, int m,
                int n, int K, bool tb, float beta, const float* bias, PrefetchCursor& pf);

// Weight gradients of a short segment: C (M, n; row stride ldc) += Aᵀ B over the segment's rows,
// A (rows, M; row stride lda), B (rows, n; row stride ldb), rows up to kShortRows. Each C element
// adds the rows' products in row order, one at a time. Needs n % 16 == 0; pf walks the next
// tile's C.
bool small_wgrad_fits(int rows, int n);
void small_wgrad(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb,
                 int rows, int M, int n, PrefetchCursor& pf);

}  // namespace moe::cpu
