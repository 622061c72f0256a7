// Short-segment products without packing (cpu_small_gemm.h).
#include "backend/cpu/cpu_small_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MOESIM_SMALL_GEMM 1
#else
#define MOESIM_SMALL_GEMM 0
#endif

namespace moe::cpu {

#if MOESIM_SMALL_GEMM

namespace {

inline void prefetch_next(PrefetchCursor& pf) {
    if (pf.row >= pf.rows) return;
    _mm_prefetch(pf.base + size_t(pf.row) * pf.stride + pf.col, _MM_HINT_T0);
    pf.col += 64;
    if (pf.col >= pf.row_bytes) {
        pf.col = 0;
        ++pf.row;
    }
}

// R rows x 16 columns of C = seed + A · B (B row-major (K, n), stride ldb), k in order.
template <int R>
void tile_nn(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, int K,
             float beta, const float* bias, PrefetchCursor& pf) {
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) {
        if (bias) {
            acc[r][0] = _mm256_loadu_ps(bias);
            acc[r][1] = _mm256_loadu_ps(bias + 8);
        } else if (beta == 0.0f) {
            acc[r][0] = _mm256_setzero_ps();
            acc[r][1] = _mm256_setzero_ps();
        } else {
            const __m256 b = _mm256_set1_ps(beta);
            acc[r][0] = _mm256_mul_ps(b, _mm256_loadu_ps(C + r * ldc));
            acc[r][1] = _mm256_mul_ps(b, _mm256_loadu_ps(C + r * ldc + 8));
        }
    }
    for (int k = 0; k < K; ++k) {
        prefetch_next(pf);
        const __m256 b0 = _mm256_loadu_ps(B + size_t(k) * ldb);
        const __m256 b1 = _mm256_loadu_ps(B + size_t(k) * ldb + 8);
        for (int r = 0; r < R; ++r) {
            const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; ++r) {
        _mm256_storeu_ps(C + r * ldc, acc[r][0]);
        _mm256_storeu_ps(C + r * ldc + 8, acc[r][1]);
    }
}

// The 8 lanes of v added in a fixed tree: (0+4, 1+5, 2+6, 3+7), then pairs, then the last two.
inline float lane_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// R rows x 4 columns of C = seed + A · Bᵀ (B row-major (n, K), stride ldb): dot products over k
// in 8 lanes (k mod 8), then lane_sum.
template <int R>
void tile_nt(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, int K,
             float beta, const float* bias, PrefetchCursor& pf) {
    __m256 acc[R][4];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int k = 0; k < K; k += 8) {
        prefetch_next(pf);  // two lines a step: the next weights are n*K/16 lines, the steps
        // of this tile at least n*K/32
        prefetch_next(pf);
        __m256 b[4];
        for (int c = 0; c < 4; ++c) b[c] = _mm256_loadu_ps(B + c * ldb + k);
        for (int r = 0; r < R; ++r) {
            const __m256 a = _mm256_loadu_ps(A + r * lda + k);
            for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) {
            const float dot = lane_sum(acc[r][c]);
            float& out = C[r * ldc + c];
            out = bias ? bias[c] + dot : beta == 0.0f ? dot : beta * out + dot;
        }
}

// Rows in blocks of 6 (nn: 12 accumulators) or 3 (nt: 12 accumulators), the rest by one smaller
// block: the register blocking of 16 vector registers.
template <int R, class F>
void rows_block(int rem, F&& f) {
    if constexpr (R > 0) {
        if (rem == R)
            f(std::integral_constant<int, R>{});
        else
            rows_block<R - 1>(rem, f);
    }
}

// R rows (i) x 16 columns of C += sum over the segment's rows r of A[r, i] B[r, :].
template <int R>
void tile_wgrad(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb,
                int rows, PrefetchCursor& pf) {
    __m256 acc[R][2];
    for (int i = 0; i < R; ++i) {
        acc[i][0] = _mm256_loadu_ps(C + i * ldc);
        acc[i][1] = _mm256_loadu_ps(C + i * ldc + 8);
    }
    for (int r = 0; r < rows; ++r) {
        const __m256 b0 = _mm256_loadu_ps(B + r * ldb);
        const __m256 b1 = _mm256_loadu_ps(B + r * ldb + 8);
        for (int i = 0; i < R; ++i) {
            const __m256 a = _mm256_broadcast_ss(A + r * lda + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    prefetch_next(pf);  // this tile reads and writes 2 R lines of C: prefetch as many ahead
    for (int i = 1; i < 2 * R; ++i) prefetch_next(pf);
    for (int i = 0; i < R; ++i) {
        _mm256_storeu_ps(C + i * ldc, acc[i][0]);
        _mm256_storeu_ps(C + i * ldc + 8, acc[i][1]);
    }
}

}  // namespace

bool small_wgrad_fits(int rows, int n) {
    return rows > 0 && rows <= kShortRows && n > 0 && n % 16 == 0;
}

void small_wgrad(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb,
                 int rows, int M, int n, PrefetchCursor& pf) {
    for (int i = 0; i < M;) {
        const int R = std::min(6, M - i);
        for (int j = 0; j < n; j += 16)
            rows_block<6>(R, [&](auto RR) {
                tile_wgrad<RR()>(C + i * ldc + j, ldc, A + i, lda, B + j, ldb, rows, pf);
            });
        i += R;
    }
}

bool small_gemm_fits(bool tb, int m, int n, int K) {
    if (m <= 0 || m > kShortRows || n <= 0 || K <= 0) return false;
    return tb ? (n % 4 == 0 && K % 8 == 0) : n % 16 == 0;
}

void small_gemm(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, int m,
                int n, int K, bool tb, float beta, const float* bias, PrefetchCursor& pf) {
    if (!tb) {
        for (int j = 0; j < n; j += 16) {
            const float* bj = bias ? bias + j : nullptr;
            int r = 0;
            for (; r + 6 <= m; r += 6)
                tile_nn<6>(C + r * ldc + j, ldc, A + r * lda, lda, B + j, ldb, K, beta, bj, pf);
            rows_block<5>(m - r, [&](auto R) {
                tile_nn<R()>(C + r * ldc + j, ldc, A + r * lda, lda, B + j, ldb, K, beta, bj, pf);
            });
        }
        return;
    }
    for (int j = 0; j < n; j += 4) {
        const float* bj = bias ? bias + j : nullptr;
        const float* Bj = B + size_t(j) * ldb;
        int r = 0;
        for (; r + 3 <= m; r += 3)
            tile_nt<3>(C + r * ldc + j, ldc, A + r * lda, lda, Bj, ldb, K, beta, bj, pf);
        rows_block<2>(m - r, [&](auto R) {
            tile_nt<R()>(C + r * ldc + j, ldc, A + r * lda, lda, Bj, ldb, K, beta, bj, pf);
        });
    }
}

#else  // no AVX2/FMA: every product goes to Eigen

bool small_gemm_fits(bool, int, int, int) {
    return false;
}
// Unreachable: small_gemm_fits is false in this build, so the callers never get here.
void small_gemm(float*, size_t, const float*, size_t, const float*, size_t, int, int, int, bool,
                float, const float*, PrefetchCursor&) {
    std::abort();
}

#endif

}  // namespace moe::cpu
