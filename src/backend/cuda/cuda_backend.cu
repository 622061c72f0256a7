// The CUDA backend: construction, activations, norms, gathers and combines, the gated rows and
// cross-entropy (the twin of cpu_backend.cpp); the matrix products are in cuda_gemm.cu, the
// whole-buffer passes in cuda_vector.cu and the memory ops in cuda_memory.cu.
//
// Each kernel computes what the CPU op computes, in the same float (or double) arithmetic, with
// one thread per output value, or one block per row where a row needs a reduction (a block tree,
// cuda_reduce.cuh). A row's serial sum on the CPU is a strided sum plus a tree here, so such
// results agree with the CPU's to rounding, not bit for bit; they are bit-identical run to run.
#include <cfloat>
#include <cstdio>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_reduce.cuh"
#include "backend/cuda/make_backend.h"

extern "C" moe::Backend* moesim_cuda_create(int threads, char* error, int error_size) {
    try {
        return new moe::cuda::CudaBackend(threads);
    } catch (const std::exception& e) {
        if (error && error_size > 0) std::snprintf(error, size_t(error_size), "%s", e.what());
        return nullptr;
    }
}

namespace moe::cuda {

CudaBackend::CudaBackend(int threads) : threads_(threads) {
    MOESIM_CUDA_CHECK(cudaSetDevice(0));
    MOESIM_CUBLAS_CHECK(cublasCreate(&cublas_));
    try {
        // Plain FP32 (the default math mode never uses TF32 for cublasSgemm), the default stream,
        // no atomics (so every product is deterministic), scalars passed from the host.
        MOESIM_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
        MOESIM_CUBLAS_CHECK(cublasSetAtomicsMode(cublas_, CUBLAS_ATOMICS_NOT_ALLOWED));
        MOESIM_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
        MOESIM_CUBLAS_CHECK(cublasSetStream(cublas_, nullptr));
        partials_ = static_cast<double*>(alloc(kReduceBlocks * sizeof(double)));
        result_ = static_cast<double*>(alloc(2 * sizeof(double)));
    } catch (...) {
        cudaFree(result_);
        cudaFree(partials_);
        cublasDestroy(cublas_);
        throw;
    }
}

// No error is checked here: a destructor must not throw, and the process is ending or the
// backend is no longer used.
CudaBackend::~CudaBackend() {
    cudaFree(route_);
    cudaFree(cols_);
    cudaFree(row_hit_);
    cudaFree(row_loss_);
    cudaFree(result_);
    cudaFree(partials_);
    cublasDestroy(cublas_);
}

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kNormEps = 1e-5f;  // the CPU backend's (cpu_backend.cpp)

__device__ inline float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

// One thread per output value h[r][j], r < rows, j < H.
__global__ void act_forward_kernel(float* h, const float* pre, int rows, int H, Activation act) {
    const size_t n = size_t(rows) * H;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        if (act == Activation::swiglu) {
            const size_t r = i / H, j = i % H;
            const float a = pre[r * 2 * H + j];
            const float b = pre[r * 2 * H + H + j];
            h[i] = a * sigmoidf(a) * b;
        } else if (act == Activation::gelu) {
            const float x = pre[i];
            h[i] = 0.5f * x * (1.0f + erff(x * kInvSqrt2));
        } else {
            const float x = pre[i];
            h[i] = x > 0.0f ? x : 0.0f;
        }
    }
}

// One thread per value of dh; for swiglu the thread of (r, j) owns dpre's gate and up values of
// (r, j), and reads both of pre's before writing either (dpre may equal pre).
__global__ void act_backward_kernel(float* dpre, const float* dh, const float* pre, int rows, int H,
                                    Activation act) {
    const size_t n = size_t(rows) * H;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        const float dy = dh[i];
        if (act == Activation::swiglu) {
            const size_t r = i / H, j = i % H;
            const size_t ia = r * 2 * H + j, ib = ia + H;
            const float a = pre[ia], b = pre[ib];
            const float s = sigmoidf(a);
            const float silu = a * s;
            dpre[ia] = dy * b * (s + silu * (1.0f - s));
            dpre[ib] = dy * silu;
        } else if (act == Activation::gelu) {
            const float x = pre[i];
            dpre[i] =
                dy * (0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x));
        } else {
            const float x = pre[i];
            dpre[i] = x > 0.0f ? dy : 0.0f;
        }
    }
}

// One block per row t: the row's sum of squares (float, a block tree), then y = x r g.
__global__ void rmsnorm_forward_kernel(float* y, float* rrms, const float* x, const float* g,
                                       int D) {
    __shared__ float s[kThreads];
    const size_t t = blockIdx.x;
    const float* xr = x + t * D;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < D; j += kThreads) ss += xr[j] * xr[j];
    ss = block_sum(ss, s);
    const float r = 1.0f / sqrtf(ss / float(D) + kNormEps);
    if (threadIdx.x == 0) rrms[t] = r;
    float* yr = y + t * D;
    for (int j = threadIdx.x; j < D; j += kThreads) yr[j] = xr[j] * r * g[j];
}

// One block per row t: dx_j = r (g_j dy_j - x_j r^2 mean_i(g_i dy_i x_i)).
__global__ void rmsnorm_backward_dx_kernel(float* dx, const float* dy, const float* x,
                                           const float* g, const float* rrms, int D) {
    __shared__ float s[kThreads];
    const size_t t = blockIdx.x;
    const float* xr = x + t * D;
    const float* dyr = dy + t * D;
    const float r = rrms[t];
    float dot = 0.0f;
    for (int j = threadIdx.x; j < D; j += kThreads) dot += g[j] * dyr[j] * xr[j];
    dot = block_sum(dot, s);
    const float c = r * r * dot / float(D);
    float* dxr = dx + t * D;
    for (int j = threadIdx.x; j < D; j += kThreads) dxr[j] = r * (g[j] * dyr[j] - xr[j] * c);
}

// dy[t][j] x[t][j] rrms[t], summed over t into dg[j] (the column sums' value).
struct RmsGainValue {
    const float *dy, *x, *rrms;
    int D;
    __device__ float operator()(int t, int j) const {
        return dy[size_t(t) * D + j] * x[size_t(t) * D + j] * rrms[t];
    }
};

__global__ void gather_rows_kernel(float* dst, const float* src, const int* idx, int n, int D) {
    const size_t total = size_t(n) * D;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
         i += size_t(gridDim.x) * blockDim.x) {
        const size_t a = i / D, d = i % D;
        dst[i] = src[size_t(idx[a]) * D + d];
    }
}

// One thread per output value out[t][d]: the token's assignments in by-token order.
__global__ void combine_by_token_kernel(float* out, const float* Y, const int* tok_off,
                                        const int* tok_assign, const float* w, int T, int D,
                                        bool accumulate) {
    const size_t total = size_t(T) * D;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
         i += size_t(gridDim.x) * blockDim.x) {
        const size_t t = i / D, d = i % D;
        float acc = accumulate ? out[i] : 0.0f;
        for (int k = tok_off[t]; k < tok_off[t + 1]; ++k) {
            const int a = tok_assign[k];
            const float wa = w ? w[a] : 1.0f;
            acc += wa * Y[size_t(a) * D + d];
        }
        out[i] = acc;
    }
}

// One block per token t, its assignments in order: dY[a] = w[a] dout[t], dw[a] = <dout[t], Y[a]>.
// Each value of Y[a] is read by the thread that then writes dY[a] at the same place (dY may
// equal Y).
__global__ void combine_by_token_backward_kernel(float* dY, float* dw, const float* dout,
                                                 const float* Y, const int* tok_off,
                                                 const int* tok_assign, const float* w, int D) {
    __shared__ float s[kThreads];
    const size_t t = blockIdx.x;
    const float* go = dout + t * D;
    for (int k = tok_off[t]; k < tok_off[t + 1]; ++k) {
        const int a = tok_assign[k];
        const float wa = w ? w[a] : 1.0f;
        const float* y = Y + size_t(a) * D;
        float* dy = dY + size_t(a) * D;
        float dot = 0.0f;
        for (int d = threadIdx.x; d < D; d += kThreads) {
            const float god = go[d];
            dot += god * y[d];
            dy[d] = wa * god;
        }
        dot = block_sum(dot, s);
        if (dw && threadIdx.x == 0) dw[a] = dot;
    }
}

// One block per row t: g = sigmoid(a[t]) (every thread reads a[t] before thread 0 overwrites it).
__global__ void gate_rows_forward_kernel(float* y, float* a, const float* S, int D) {
    const size_t t = blockIdx.x;
    const float g = sigmoidf(a[t]);
    __syncthreads();
    if (threadIdx.x == 0) a[t] = g;
    const float* s = S + t * D;
    float* yt = y + t * D;
    for (int d = threadIdx.x; d < D; d += kThreads) yt[d] += g * s[d];
}

// One block per row t: dS[t] = g dy[t]; da[t] = <dy[t], S[t]> (double) g (1 - g).
__global__ void gate_rows_backward_kernel(float* dS, float* da, const float* dy, const float* S,
                                          const float* g, int D) {
    __shared__ double s[kThreads];
    const size_t t = blockIdx.x;
    const float gt = g[t];
    const float* st = S + t * D;
    const float* dyt = dy + t * D;
    float* ds = dS + t * D;
    double dot = 0.0;
    for (int d = threadIdx.x; d < D; d += kThreads) {
        const float dyd = dyt[d];
        dot += double(dyd) * st[d];
        ds[d] = gt * dyd;
    }
    dot = block_sum(dot, s);
    if (threadIdx.x == 0) da[t] = float(dot * gt * (1.0f - gt));
}

// exp(z - shift), flushed to 0 below the smallest normal float (as the CPU's vec_exp_shifted).
__device__ inline float exp_shifted(float z, float shift) {
    const float e = expf(z - shift);
    return e >= FLT_MIN ? e : 0.0f;
}

// Whether (v, i) comes before (bv, bi) as the CPU's argmax scan would pick: a number before NaN,
// a larger value first, the lower index among equal values.
__device__ inline bool argmax_before(float v, int i, float bv, int bi) {
    if (isnan(v)) return isnan(bv) && i < bi;
    if (isnan(bv)) return true;
    return v > bv || (v == bv && i < bi);
}

// One block per row t of logits (T,C): the log-sum-exp (the max in float, the sum of the shifted
// exponentials in double), the loss lse - z[label] and whether the argmax is the label, into
// row_loss[t] and row_hit[t]; and dlogits[t] = (softmax - onehot) inv_t when dlogits is not null.
// The CPU scans `if (z[c] > z[arg]) arg = c` from arg = 0: the first largest value, NaN never
// taken, and 0 when z[0] is NaN; the block finds the same with argmax_before and that last rule.
__global__ void cross_entropy_rows_kernel(double* row_loss, int* row_hit, float* dlogits,
                                          const float* logits, const int* labels, int C,
                                          float inv_t) {
    __shared__ float sf[kThreads];
    __shared__ double sd[kThreads];
    __shared__ int si[kThreads];
    const size_t t = blockIdx.x;
    const float* z = logits + t * C;

    float mx = -INFINITY, bv = NAN;
    int bi = C;
    for (int c = threadIdx.x; c < C; c += kThreads) {
        const float v = z[c];
        mx = fmaxf(mx, v);
        if (argmax_before(v, c, bv, bi)) {
            bv = v;
            bi = c;
        }
    }
    mx = block_max(mx, sf);

    sf[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if (int(threadIdx.x) < w && argmax_before(sf[threadIdx.x + w], si[threadIdx.x + w],
                                                  sf[threadIdx.x], si[threadIdx.x])) {
            sf[threadIdx.x] = sf[threadIdx.x + w];
            si[threadIdx.x] = si[threadIdx.x + w];
        }
        __syncthreads();
    }
    // Every read of z before the dlogits loop is followed by a barrier (this one, or block_sum's
    // below), and in that loop each thread reads a value before writing it: dlogits may equal
    // logits, as on the CPU.
    const int arg = isnan(z[0]) ? 0 : si[0];
    const int label = labels[t];
    const float z_label = z[label];
    __syncthreads();

    double sum = 0.0;
    for (int c = threadIdx.x; c < C; c += kThreads) sum += double(exp_shifted(z[c], mx));
    sum = block_sum(sum, sd);
    const double lse = double(mx) + log(sum);
    if (threadIdx.x == 0) {
        row_loss[t] = lse - double(z_label);
        row_hit[t] = arg == label ? 1 : 0;
    }
    if (dlogits) {
        float* dz = dlogits + t * C;
        const float shift = float(lse);
        for (int c = threadIdx.x; c < C; c += kThreads) {
            float v = exp_shifted(z[c], shift) * inv_t;
            if (c == label) v -= inv_t;
            dz[c] = v;
        }
    }
}

// One block: result[0] = the sum of row_loss (double), result[1] = the count of row_hit (int64);
// thread k adds rows k, k + kThreads, ... in order, then the block tree.
__global__ void cross_entropy_sum_kernel(double* result, const double* row_loss, const int* row_hit,
                                         int T) {
    __shared__ double sd[kThreads];
    __shared__ long long sl[kThreads];
    double loss = 0.0;
    long long hits = 0;
    for (int t = threadIdx.x; t < T; t += kThreads) {
        loss += row_loss[t];
        hits += row_hit[t];
    }
    loss = block_sum(loss, sd);
    hits = block_sum(hits, sl);
    if (threadIdx.x == 0) {
        result[0] = loss;
        reinterpret_cast<long long*>(result)[1] = hits;
    }
}

}  // namespace

void CudaBackend::act_forward(float* h, const float* pre, int rows, int H, Activation act) {
    const size_t n = size_t(rows) * H;
    if (rows <= 0 || H <= 0) return;
    act_forward_kernel<<<elementwise_blocks(n), kThreads>>>(h, pre, rows, H, act);
    MOESIM_CUDA_LAUNCHED(act_forward_kernel);
}

void CudaBackend::act_backward(float* dpre, const float* dh, const float* pre, int rows, int H,
                               Activation act) {
    const size_t n = size_t(rows) * H;
    if (rows <= 0 || H <= 0) return;
    act_backward_kernel<<<elementwise_blocks(n), kThreads>>>(dpre, dh, pre, rows, H, act);
    MOESIM_CUDA_LAUNCHED(act_backward_kernel);
}

void CudaBackend::rmsnorm_forward(float* y, float* rrms, const float* x, const float* g, int T,
                                  int D) {
    if (T <= 0) return;
    rmsnorm_forward_kernel<<<unsigned(T), kThreads>>>(y, rrms, x, g, D);
    MOESIM_CUDA_LAUNCHED(rmsnorm_forward_kernel);
}

void CudaBackend::rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x,
                                   const float* g, const float* rrms, int T, int D) {
    if (T <= 0 || D <= 0) return;
    rmsnorm_backward_dx_kernel<<<unsigned(T), kThreads>>>(dx, dy, x, g, rrms, D);
    MOESIM_CUDA_LAUNCHED(rmsnorm_backward_dx_kernel);
    add_column_sums(dg, column_scratch(size_t(column_chunks(T)) * D), T, D,
                    RmsGainValue{dy, x, rrms, D});
}

void CudaBackend::gather_rows(float* dst, const float* src, const int* idx, int n, int D) {
    if (n <= 0 || D <= 0) return;
    gather_rows_kernel<<<elementwise_blocks(size_t(n) * D), kThreads>>>(dst, src, idx, n, D);
    MOESIM_CUDA_LAUNCHED(gather_rows_kernel);
}

void CudaBackend::combine_by_token(float* out, const float* Y, const int* tok_off,
                                   const int* tok_assign, const float* w, int T, int D,
                                   bool accumulate) {
    if (T <= 0 || D <= 0) return;
    combine_by_token_kernel<<<elementwise_blocks(size_t(T) * D), kThreads>>>(
        out, Y, tok_off, tok_assign, w, T, D, accumulate);
    MOESIM_CUDA_LAUNCHED(combine_by_token_kernel);
}

void CudaBackend::combine_by_token_backward(float* dY, float* dw, const float* dout, const float* Y,
                                            const int* tok_off, const int* tok_assign,
                                            const float* w, int T, int D) {
    if (T <= 0) return;
    combine_by_token_backward_kernel<<<unsigned(T), kThreads>>>(dY, dw, dout, Y, tok_off,
                                                                tok_assign, w, D);
    MOESIM_CUDA_LAUNCHED(combine_by_token_backward_kernel);
}

void CudaBackend::gate_rows_forward(float* y, float* a, const float* S, int T, int D) {
    if (T <= 0) return;
    gate_rows_forward_kernel<<<unsigned(T), kThreads>>>(y, a, S, D);
    MOESIM_CUDA_LAUNCHED(gate_rows_forward_kernel);
}

void CudaBackend::gate_rows_backward(float* dS, float* da, const float* dy, const float* S,
                                     const float* g, int T, int D) {
    if (T <= 0) return;
    gate_rows_backward_kernel<<<unsigned(T), kThreads>>>(dS, da, dy, S, g, D);
    MOESIM_CUDA_LAUNCHED(gate_rows_backward_kernel);
}

void CudaBackend::reserve_rows(int rows) {
    if (rows <= rows_cap_) return;
    release(row_hit_);
    release(row_loss_);
    row_hit_ = nullptr;
    row_loss_ = nullptr;
    rows_cap_ = 0;
    row_loss_ = static_cast<double*>(alloc(size_t(rows) * sizeof(double)));
    row_hit_ = static_cast<int*>(alloc(size_t(rows) * sizeof(int)));
    rows_cap_ = rows;
}

float* CudaBackend::column_scratch(size_t n) {
    if (n > cols_cap_) {
        release(cols_);
        cols_ = nullptr;
        cols_cap_ = 0;
        cols_ = static_cast<float*>(alloc(n * sizeof(float)));
        cols_cap_ = n;
    }
    return cols_;
}

double CudaBackend::cross_entropy(float* dlogits, const float* logits, const int* labels, int T,
                                  int C, float scale, int64_t* correct) {
    if (T <= 0) {  // as the CPU: no rows, no hits, and the mean of nothing (0 / 0)
        if (correct) *correct = 0;
        return 0.0 / double(T);
    }
    reserve_rows(T);
    const float inv_t = scale / float(T);
    cross_entropy_rows_kernel<<<unsigned(T), kThreads>>>(row_loss_, row_hit_, dlogits, logits,
                                                         labels, C, inv_t);
    MOESIM_CUDA_LAUNCHED(cross_entropy_rows_kernel);
    cross_entropy_sum_kernel<<<1, kThreads>>>(result_, row_loss_, row_hit_, T);
    MOESIM_CUDA_LAUNCHED(cross_entropy_sum_kernel);
    double host[2];
    MOESIM_CUDA_CHECK(cudaMemcpy(host, result_, sizeof(host), cudaMemcpyDeviceToHost));
    if (correct) {
        long long hits = 0;
        std::memcpy(&hits, &host[1], sizeof(hits));
        *correct = int64_t(hits);
    }
    return host[0] / T;
}

}  // namespace moe::cuda
