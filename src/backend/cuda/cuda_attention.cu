// The CUDA backend's token-model ops: embedding lookups and causal self-attention (backend.h),
// written plainly: one thread per output row or value, each computing its sums serially in
// ascending index order (the CPU's order), no atomics; so results are run-to-run identical.
// Meant for the toy sizes of the token tasks, not for speed.
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moe::cuda {

namespace {

__global__ void embedding_forward_kernel(float* out, const float* table, const int* ids, int T,
                                         int D, bool accumulate) {
    const size_t total = size_t(T) * D;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
         i += size_t(gridDim.x) * blockDim.x) {
        const size_t t = i / D, d = i % D;
        const float e = table[size_t(ids[t]) * D + d];
        out[i] = accumulate ? out[i] + e : e;
    }
}

// One thread per table value (v, d): the tokens of row v in ascending t.
__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int* ids, int T,
                                          int V, int D) {
    const size_t total = size_t(V) * D;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
         i += size_t(gridDim.x) * blockDim.x) {
        const int v = int(i / D);
        const size_t d = i % D;
        float acc = dtable[i];
        for (int t = 0; t < T; ++t)
            if (ids[t] == v) acc += dout[size_t(t) * D + d];
        dtable[i] = acc;
    }
}

__device__ float dot(const float* a, const float* b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

// One thread per (sequence, head, query position i): its row of P and its output row.
__global__ void attention_forward_kernel(float* out, float* probs, const float* qkv, int nseq,
                                         int S, int H, int hd, float scale) {
    const int D = H * hd;
    const size_t row = 3 * size_t(D), total = size_t(nseq) * H * S;
    for (size_t r = blockIdx.x * size_t(blockDim.x) + threadIdx.x; r < total;
         r += size_t(gridDim.x) * blockDim.x) {
        const size_t p = r / S;
        const int i = int(r % S), s = int(p / H), h = int(p % H);
        const float* base = qkv + size_t(s) * S * row;
        float* P = probs + r * S;
        const float* q = base + i * row + size_t(h) * hd;
        float mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
            P[j] = scale * dot(q, base + j * row + D + size_t(h) * hd, hd);
            mx = fmaxf(mx, P[j]);
        }
        float sum = 0.0f;
        for (int j = 0; j <= i; ++j) {
            P[j] = expf(P[j] - mx);
            sum += P[j];
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j <= i; ++j) P[j] *= inv;
        for (int j = i + 1; j < S; ++j) P[j] = 0.0f;
        float* o = out + (size_t(s) * S + i) * D + size_t(h) * hd;
        for (int c = 0; c < hd; ++c) o[c] = 0.0f;
        for (int j = 0; j <= i; ++j) {
            const float* v = base + j * row + 2 * size_t(D) + size_t(h) * hd;
            for (int c = 0; c < hd; ++c) o[c] += P[j] * v[c];
        }
    }
}

// One thread per (sequence, head, query position i): dS row i and dq_i.
__global__ void attention_dq_kernel(float* dqkv, float* dscores, const float* dout,
                                    const float* qkv, const float* probs, int nseq, int S, int H,
                                    int hd, float scale) {
    const int D = H * hd;
    const size_t row = 3 * size_t(D), total = size_t(nseq) * H * S;
    for (size_t r = blockIdx.x * size_t(blockDim.x) + threadIdx.x; r < total;
         r += size_t(gridDim.x) * blockDim.x) {
        const size_t p = r / S;
        const int i = int(r % S), s = int(p / H), h = int(p % H);
        const float* base = qkv + size_t(s) * S * row;
        const size_t qo = size_t(h) * hd, ko = D + qo, vo = 2 * size_t(D) + qo;
        const float* P = probs + r * S;
        float* dS = dscores + r * S;
        const float* dy = dout + (size_t(s) * S + i) * D + qo;
        float rowdot = 0.0f;
        for (int j = 0; j <= i; ++j) {
            dS[j] = dot(dy, base + j * row + vo, hd);
            rowdot += P[j] * dS[j];
        }
        for (int j = 0; j <= i; ++j) dS[j] = P[j] * (dS[j] - rowdot);
        for (int j = i + 1; j < S; ++j) dS[j] = 0.0f;
        float* dq = dqkv + (size_t(s) * S + i) * row + qo;
        for (int c = 0; c < hd; ++c) dq[c] = 0.0f;
        for (int j = 0; j <= i; ++j) {
            const float* k = base + j * row + ko;
            for (int c = 0; c < hd; ++c) dq[c] += dS[j] * k[c];
        }
        for (int c = 0; c < hd; ++c) dq[c] *= scale;
    }
}

// One thread per (sequence, head, key position j): dk_j and dv_j over the queries i >= j.
__global__ void attention_dkv_kernel(float* dqkv, const float* dscores, const float* dout,
                                     const float* qkv, const float* probs, int nseq, int S, int H,
                                     int hd, float scale) {
    const int D = H * hd;
    const size_t row = 3 * size_t(D), total = size_t(nseq) * H * S;
    for (size_t r = blockIdx.x * size_t(blockDim.x) + threadIdx.x; r < total;
         r += size_t(gridDim.x) * blockDim.x) {
        const size_t p = r / S;
        const int j = int(r % S), s = int(p / H), h = int(p % H);
        const float* base = qkv + size_t(s) * S * row;
        const size_t qo = size_t(h) * hd, ko = D + qo, vo = 2 * size_t(D) + qo;
        float* dk = dqkv + (size_t(s) * S + j) * row + ko;
        float* dv = dqkv + (size_t(s) * S + j) * row + vo;
        for (int c = 0; c < hd; ++c) dk[c] = dv[c] = 0.0f;
        for (int i = j; i < S; ++i) {
            const float dSij = dscores[(p * S + i) * S + j];
            const float Pij = probs[(p * S + i) * S + j];
            const float* q = base + i * row + qo;
            const float* dy = dout + (size_t(s) * S + i) * D + qo;
            for (int c = 0; c < hd; ++c) {
                dk[c] += dSij * q[c];
                dv[c] += Pij * dy[c];
            }
        }
        for (int c = 0; c < hd; ++c) dk[c] *= scale;
    }
}

}  // namespace

void CudaBackend::embedding_forward(float* out, const float* table, const int* ids, int T, int D,
                                    bool accumulate) {
    if (T <= 0 || D <= 0) return;
    embedding_forward_kernel<<<elementwise_blocks(size_t(T) * D), kThreads>>>(out, table, ids, T, D,
                                                                              accumulate);
    MOESIM_CUDA_LAUNCHED(embedding_forward_kernel);
}

void CudaBackend::embedding_backward(float* dtable, const float* dout, const int* ids, int T, int V,
                                     int D) {
    if (T <= 0 || V <= 0 || D <= 0) return;
    embedding_backward_kernel<<<elementwise_blocks(size_t(V) * D), kThreads>>>(dtable, dout, ids, T,
                                                                               V, D);
    MOESIM_CUDA_LAUNCHED(embedding_backward_kernel);
}

void CudaBackend::attention_forward(float* out, float* probs, const float* qkv, int nseq, int S,
                                    int H, int hd, float scale) {
    if (nseq <= 0 || S <= 0 || H <= 0) return;
    const size_t rows = size_t(nseq) * H * S;
    attention_forward_kernel<<<elementwise_blocks(rows), kThreads>>>(out, probs, qkv, nseq, S, H,
                                                                     hd, scale);
    MOESIM_CUDA_LAUNCHED(attention_forward_kernel);
}

void CudaBackend::attention_backward(float* dqkv, float* dscores, const float* dout,
                                     const float* qkv, const float* probs, int nseq, int S, int H,
                                     int hd, float scale) {
    if (nseq <= 0 || S <= 0 || H <= 0) return;
    const size_t rows = size_t(nseq) * H * S;
    // dk, dv read every dS row; the launches are ordered on the stream
    attention_dq_kernel<<<elementwise_blocks(rows), kThreads>>>(dqkv, dscores, dout, qkv, probs,
                                                                nseq, S, H, hd, scale);
    MOESIM_CUDA_LAUNCHED(attention_dq_kernel);
    attention_dkv_kernel<<<elementwise_blocks(rows), kThreads>>>(dqkv, dscores, dout, qkv, probs,
                                                                 nseq, S, H, hd, scale);
    MOESIM_CUDA_LAUNCHED(attention_dkv_kernel);
}

}  // namespace moe::cuda
