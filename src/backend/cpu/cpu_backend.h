// The CPU backend: Eigen for the matrix products, OpenMP across independent pieces of work.
#pragma once

#include <vector>

#include "backend/backend.h"

namespace moe::cpu {

class CpuBackend : public Backend {
public:
    explicit CpuBackend(int threads);
    Device device() const override { return Device::cpu; }
    int threads() const override { return threads_; }

    bool host_memory() const override { return true; }
    void* alloc(size_t bytes) override;
    void release(void* p) override;
    void to_device(void* dst, const void* host_src, size_t bytes) override;
    void to_host(void* host_dst, const void* src, size_t bytes) override;
    void copy(void* dst, const void* src, size_t bytes) override;
    void fill_zero(void* p, size_t bytes) override;

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
    void expert_ffn_forward(float* yd, float* h, float* pre, const float* xd, const float* w1,
                            const float* b1, const float* w2, const float* b2, const int* off,
                            const FfnShape& s) override;
    void expert_ffn_backward(float* dxd, float* dpre, float* dh, float* dw1, float* db1, float* dw2,
                             float* db2, const float* dyd, const float* xd, const float* h,
                             const float* pre, const float* w1, const float* w2, const int* off,
                             const FfnShape& s) override;
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

    // One piece of a matrix product: a tile of the output of one group.
    struct Tile {
        int group, r0, r1, c0, c1;
    };

private:
    // Whether the fused feed-forward ops run whole segments per thread (cpu_ffn.cpp); if so,
    // seg_order_ holds the non-empty segments, largest first.
    bool ffn_segments(const int* off, int G);
    void run_tiles(float* C, const float* A, const float* B, size_t b_stride, const int* off, int N,
                   int K, bool tb, float beta, const float* bias, size_t bias_stride);
    int threads_;
    std::vector<Tile> tiles_;                        // reused: no allocation once grown
    std::vector<double> partials_;                   // reused by the reductions
    std::vector<int> emb_off_, emb_tok_, emb_next_;  // embedding_backward's by-row index
    std::vector<double> switch_scratch_;             // switch_loss_grad's per-expert values
    std::vector<int> index_cursor_;                  // plan_index_by_token's cursors
    std::vector<int> seg_order_;                     // ffn_segments' order of the segments
};

}  // namespace moe::cpu
