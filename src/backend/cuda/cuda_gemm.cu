// The CUDA backend's matrix products through cuBLAS (plain FP32: the handle's math mode is the
// default, which never uses TF32 for cublasSgemm), and the per-segment bias kernels (the bias
// gradient's column sums in cuda_reduce.cuh's two passes of fixed shape).
//
// Matrices are row-major and cuBLAS is column-major: a row-major (R,C) matrix is the
// column-major (C,R) matrix of its transpose, so C = op(A) op(B) is computed as
// Cᵀ = op(B)ᵀ op(A)ᵀ, with the operands swapped and the same transpose flags.
//
// The grouped products run one cublasSgemm per non-empty segment, in segment order.
#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_reduce.cuh"

namespace moe::cuda {

namespace {

// C (rows, N) = the bias row (N), every row.
__global__ void bias_rows_kernel(float* C, const float* bias, size_t n, int N) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x)
        C[i] = bias[i % size_t(N)];
}

// dC[r][j] of a segment's rows (the column sums' value).
struct RowValue {
    const float* dC;
    int N;
    __device__ float operator()(int r, int j) const { return dC[size_t(r) * N + j]; }
};

}  // namespace

void CudaBackend::gemm_one(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                           bool tb, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // an empty sum: C = beta C (C = 0 when beta is 0, whatever C held)
        if (beta == 0.0f)
            fill_zero(C, size_t(M) * N * sizeof(float));
        else if (beta != 1.0f)
            scale(C, size_t(M) * N, beta);
        return;
    }
    const float alpha = 1.0f;
    // Column-major: Cᵀ (N,M) = op(B)ᵀ (N,K) · op(A)ᵀ (K,M).
    // B stored (K,N) row-major is Bᵀ (N,K) column-major with leading dimension N; stored (N,K)
    // (tb) it is the (K,N) column-major matrix B itself, transposed by cuBLAS, leading dim K.
    // A stored (M,K) is Aᵀ (K,M) column-major, leading dim K; stored (K,M) (ta) it is (M,K),
    // transposed by cuBLAS, leading dim M.
    const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int ldb = tb ? K : N;
    const int lda = ta ? M : K;
    MOESIM_CUBLAS_CHECK(
        cublasSgemm(cublas_, op_b, op_a, N, M, K, &alpha, B, ldb, A, lda, &beta, C, N));
}

void CudaBackend::gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                       bool tb, float beta) {
    gemm_one(C, A, B, M, N, K, ta, tb, beta);
}

void CudaBackend::gemm_grouped_rows(float* C, const float* A, const float* B, size_t b_stride,
                                    const int* off, int G, int N, int K, bool tb, float beta) {
    for (int g = 0; g < G; ++g) {
        const int rows = off[g + 1] - off[g];
        if (rows <= 0) continue;
        gemm_one(C + size_t(off[g]) * N, A + size_t(off[g]) * K, B + size_t(g) * b_stride, rows, N,
                 K, false, tb, beta);
    }
}

void CudaBackend::gemm_grouped_wgrad(float* C, size_t c_stride, const float* A, const float* B,
                                     const int* off, int G, int M, int N) {
    // C_g (M,N) += A[rows]ᵀ · B[rows]: A[rows] is stored (m_g, M), so this is gemm with ta and
    // K = m_g, beta 1.
    for (int g = 0; g < G; ++g) {
        const int rows = off[g + 1] - off[g];
        if (rows <= 0) continue;
        gemm_one(C + size_t(g) * c_stride, A + size_t(off[g]) * M, B + size_t(off[g]) * N, M, N,
                 rows, true, false, 1.0f);
    }
}

void CudaBackend::gemm_grouped_rows_bias(float* C, const float* A, const float* B, size_t b_stride,
                                         const float* bias, size_t bias_stride, const int* off,
                                         int G, int N, int K) {
    if (N <= 0) return;
    for (int g = 0; g < G; ++g) {
        const int rows = off[g + 1] - off[g];
        if (rows <= 0) continue;
        float* Cg = C + size_t(off[g]) * N;
        const size_t n = size_t(rows) * N;
        bias_rows_kernel<<<elementwise_blocks(n), kThreads>>>(Cg, bias + size_t(g) * bias_stride, n,
                                                              N);
        MOESIM_CUDA_LAUNCHED(bias_rows_kernel);
        gemm_one(Cg, A + size_t(off[g]) * K, B + size_t(g) * b_stride, rows, N, K, false, false,
                 1.0f);
    }
}

void CudaBackend::bias_grad_grouped(float* dbias, size_t b_stride, const float* dC, const int* off,
                                    int G, int N) {
    if (N <= 0) return;
    int most = 0;  // the longest segment: the scratch is grown once, before any launch
    for (int g = 0; g < G; ++g) most = std::max(most, off[g + 1] - off[g]);
    if (most <= 0) return;
    float* scratch = column_scratch(size_t(column_chunks(most)) * N);
    for (int g = 0; g < G; ++g) {  // in segment order on one stream: each reuses the scratch
        const int rows = off[g + 1] - off[g];
        if (rows <= 0) continue;
        add_column_sums(dbias + size_t(g) * b_stride, scratch, rows, N,
                        RowValue{dC + size_t(off[g]) * N, N});
    }
}

}  // namespace moe::cuda
