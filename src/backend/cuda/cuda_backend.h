// The CUDA backend: cuBLAS for the matrix products, plain kernels for everything else, all on the
// default stream (so every op is ordered after the one before). Internal to backend/cuda/: the
// rest of the project reaches it through make_backend.h.
//
// Determinism: no float atomics. Every reduction has a fixed shape that depends only on the
// problem size (a block of kThreads threads per row with a shared-memory tree, the column sums'
// chunks of kColumnChunk rows, the two passes of sum_squares), so results are bit-identical run
// to run on one GPU. cuBLAS is deterministic
// on one GPU model with one stream and atomics not allowed (its default).
#pragma once

#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>

#include "backend/backend.h"

namespace moe::cuda {

// Threads per block of every kernel (a power of two: the trees halve it).
constexpr int kThreads = 256;
// Rows per partial sum of the column sums (bias and norm-gain gradients, cuda_reduce.cuh).
constexpr int kColumnChunk = 64;
// Blocks of an elementwise kernel over n values (each thread strides over the grid): enough to fill
// any GPU, few enough that the grid never reaches CUDA's limits. n > 0.
inline unsigned elementwise_blocks(size_t n) {
    const size_t blocks = (n + kThreads - 1) / kThreads;
    return unsigned(blocks < 65536 ? blocks : 65536);
}
// Blocks of the first pass of sum_squares and of the optimizer steps: each block's partial sum
// goes to one slot, and one block adds the slots in a fixed tree.
constexpr int kReduceBlocks = 1024;

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int threads);
    ~CudaBackend() override;
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;

    Device device() const override { return Device::cuda; }
    int threads() const override { return threads_; }

    bool host_memory() const override { return false; }
    void* alloc(size_t bytes) override;
    void release(void* p) override;
    void to_device(void* dst, const void* host_src, size_t bytes) override;
    void to_host(void* host_dst, const void* src, size_t bytes) override;
    void copy(void* dst, const void* src, size_t bytes) override;
    void fill_zero(void* p, size_t bytes) override;
    void synchronize() override;

    void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
              float beta) override;
    void gemm_grouped_rows(float* C, const float* A, const float* B, size_t b_stride,
                           const int* off, int G, int N, int K, bool tb, float beta) override;
    void gemm_grouped_wgrad(float* C, size_t c_stride, const float* A, const float* B,
                            const int* off, int G, int M, int N) override;
    void gemm_grouped_rows_bias(float* C, const float* A, const float* B, size_t b_stride,
                                const float* bias, size_t bias_stride, const int* off, int G, int N,
                                int K) override;
    void bias_grad_grouped(float* dbias, size_t b_stride, const float* dC, const int* off, int G,
                           int N) override;
    void act_forward(float* h, const float* pre, int rows, int H, Activation act) override;
    void act_backward(float* dpre, const float* dh, const float* pre, int rows, int H,
                      Activation act) override;
    void rmsnorm_forward(float* y, float* rrms, const float* x, const float* g, int T,
                         int D) override;
    void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x, const float* g,
                          const float* rrms, int T, int D) override;
    void gather_rows(float* dst, const float* src, const int* idx, int n, int D) override;
    void combine_by_token(float* out, const float* Y, const int* tok_off, const int* tok_assign,
                          const float* w, int T, int D, bool accumulate) override;
    void combine_by_token_backward(float* dY, float* dw, const float* dout, const float* Y,
                                   const int* tok_off, const int* tok_assign, const float* w, int T,
                                   int D) override;
    void gate_rows_forward(float* y, float* a, const float* S, int T, int D) override;
    void gate_rows_backward(float* dS, float* da, const float* dy, const float* S, const float* g,
                            int T, int D) override;
    void embedding_forward(float* out, const float* table, const int* ids, int T, int D,
                           bool accumulate) override;
    void embedding_backward(float* dtable, const float* dout, const int* ids, int T, int V,
                            int D) override;
    void attention_forward(float* out, float* probs, const float* qkv, int nseq, int S, int H,
                           int hd, float scale) override;
    void attention_backward(float* dqkv, float* dscores, const float* dout, const float* qkv,
                            const float* probs, int nseq, int S, int H, int hd,
                            float scale) override;
    void add(float* y, const float* x, size_t n) override;
    void scale(float* x, size_t n, float s) override;
    double sum_squares(const float* x, size_t n) override;
    double cross_entropy(float* dlogits, const float* logits, const int* labels, int T, int C,
                         float scale, int64_t* correct) override;
    void softmax_rows(float* p, const float* z, int T, int N, int ldz) override;
    void softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) override;
    void topk_rows(int* sel, float* gate, const float* s, const float* bias, int T, int N, int K,
                   bool normalize, float scale) override;
    void topk_rows_backward(float* ds, const float* s, const int* sel, const float* dg, int T,
                            int N, int K, bool normalize, float scale, int ldds) override;
    void plan_build(int* offsets, int* token, float* gate, int* slot, int* routed,
                    const int* expert, const float* slot_gate, const int* slot_token, int R,
                    int per_token, int N) override;
    void capacity_position(int* offsets, int* token, float* gate, int* slot, int* dropped, int N,
                           int64_t C, int A_max) override;
    void capacity_score(int* offsets, int* token, float* gate, int* slot, int* dropped, int N,
                        int64_t C, int A_max) override;
    void plan_index_by_token(int* tok_offsets, int* tok_assign, const int* token, const int* slot,
                             const int* offsets, int N, int T, int A_max) override;
    void gate_grad_to_slots(float* d_slot, const float* d_gate, const int* slot, const int* offsets,
                            int N, int R) override;
    void switch_loss_grad(float* d_probs, const int* routed, int T, int N, int K,
                          float coef) override;
    void z_loss_grad(float* d, const float* x, const double* lse, int T, int N, int ldx, int ldd,
                     float coef) override;
    void logsumexp_rows(double* lse, const float* x, int T, int N, int ldx) override;
    void column_sums(double* sums, const float* x, int T, int N) override;
    void window_observe(int64_t* counts, double* sums, int64_t* interval, const int* routed,
                        const int* dropped, const int* tok_offsets, const float* probs,
                        const float* logits, const int* groups, int num_groups,
                        const double* losses, int T, int N, int G) override;
    void adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamHyper& h,
                   float grad_scale, double* grad_sumsq) override;
    void sgd_step(float* p, float* g, float* v, size_t n, float lr, float momentum,
                  float grad_scale, double* grad_sumsq) override;

private:
    // C (M,N) = op(A) op(B) + beta C for one row-major product through cuBLAS (cuda_gemm.cu).
    void gemm_one(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
                  float beta);
    // The second pass of the reductions: adds partials_[0..kReduceBlocks) in a fixed tree into
    // result_[0] and copies it to the host (cuda_vector.cu).
    double finish_sum();
    // Device scratch for cross_entropy's per-row results, grown to `rows` rows when needed.
    void reserve_rows(int rows);
    // Device scratch of at least n floats for the column sums' partial sums.
    float* column_scratch(size_t n);
    // Device scratch of at least `bytes` bytes for the routing ops (cuda_routing.cu): one op's
    // temporaries, dead when the op returns (ops run in stream order).
    void* routing_scratch(size_t bytes);

    int threads_;
    cublasHandle_t cublas_ = nullptr;
    double* partials_ = nullptr;  // kReduceBlocks block sums (device)
    double* result_ = nullptr;    // one double, then one int64 slot (device)
    double* row_loss_ = nullptr;  // cross_entropy: loss per row (device)
    int* row_hit_ = nullptr;      // cross_entropy: 1 where the argmax is the label (device)
    int rows_cap_ = 0;
    float* cols_ = nullptr;  // column sums: partial sums (device)
    size_t cols_cap_ = 0;
    void* route_ = nullptr;  // routing ops: temporaries (device)
    size_t route_cap_ = 0;
};

}  // namespace moe::cuda
