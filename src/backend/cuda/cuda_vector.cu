// The CUDA backend's passes over whole buffers: elementwise updates, the sum of squares and the
// optimizer steps.
//
// The sum of squares has two passes of fixed shape: kReduceBlocks blocks of kThreads threads
// stride over the values (thread k of block b takes i = b * kThreads + k, then i plus the grid's
// size, ...), each thread adds its squares in double in that order, each block adds its threads in
// a fixed tree into one slot; then one block adds the kReduceBlocks slots in a fixed tree. The
// optimizer steps run the same first pass over the gradient (the same threads see the same values
// in the same order) and update each value as they read it, so their grad_sumsq is bit-identical
// to sum_squares of the gradient.
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_reduce.cuh"

namespace moe::cuda {

namespace {

__global__ void add_kernel(float* y, const float* x, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x)
        y[i] += x[i];
}

__global__ void scale_kernel(float* x, size_t n, float s) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x)
        x[i] *= s;
}

// Updates nothing: sum_squares alone.
struct NoUpdate {
    __device__ void operator()(size_t, float) const {}
};

// Adam / AdamW on value i whose raw gradient is gi, as the CPU backend computes it; zeroes g[i].
struct AdamUpdate {
    float *p, *g, *m, *v;
    float b1, b2, lr, eps, wd, ibc1, ibc2, grad_scale;
    __device__ void operator()(size_t i, float graw) const {
        const float gi = graw * grad_scale;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float mh = mi * ibc1, vh = vi * ibc2;
        const float pi = p[i];
        p[i] = pi - lr * (mh / (sqrtf(vh) + eps) + wd * pi);
        g[i] = 0.0f;
    }
};

// SGD with heavy-ball momentum: v = mu v + g; p -= lr v; zeroes g[i].
struct SgdUpdate {
    float *p, *g, *v;
    float lr, momentum, grad_scale;
    __device__ void operator()(size_t i, float graw) const {
        const float vi = momentum * v[i] + graw * grad_scale;
        v[i] = vi;
        p[i] -= lr * vi;
        g[i] = 0.0f;
    }
};

// The first pass: partials[block] = the block's sum of x[i]^2 (double), and update(i, x[i]) on
// every value after it is read. Launched with kReduceBlocks blocks of kThreads threads; every
// block writes its slot (0 when it saw no value). partials may be null (no sum wanted).
template <class Update>
__global__ void sumsq_pass_kernel(double* partials, const float* x, size_t n, Update update) {
    __shared__ double s[kThreads];
    double acc = 0.0;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        const float xi = x[i];
        // An explicit fma, not a*b + c left to the compiler's contraction: the same arithmetic
        // in every instantiation (sum_squares and the optimizer steps).
        acc = fma(double(xi), double(xi), acc);
        update(i, xi);
    }
    if (partials) {
        const double total = block_sum(acc, s);
        if (threadIdx.x == 0) partials[blockIdx.x] = total;
    }
}

// The second pass: one block; thread k adds slots k, k + kThreads, ... in order, then the tree.
__global__ void sum_slots_kernel(double* result, const double* partials, int slots) {
    __shared__ double s[kThreads];
    double acc = 0.0;
    for (int i = threadIdx.x; i < slots; i += kThreads) acc += partials[i];
    const double total = block_sum(acc, s);
    if (threadIdx.x == 0) result[0] = total;
}

}  // namespace

void CudaBackend::add(float* y, const float* x, size_t n) {
    if (n == 0) return;
    add_kernel<<<elementwise_blocks(n), kThreads>>>(y, x, n);
    MOESIM_CUDA_LAUNCHED(add_kernel);
}

void CudaBackend::scale(float* x, size_t n, float s) {
    if (n == 0) return;
    scale_kernel<<<elementwise_blocks(n), kThreads>>>(x, n, s);
    MOESIM_CUDA_LAUNCHED(scale_kernel);
}

double CudaBackend::finish_sum() {
    sum_slots_kernel<<<1, kThreads>>>(result_, partials_, kReduceBlocks);
    MOESIM_CUDA_LAUNCHED(sum_slots_kernel);
    double total = 0.0;
    MOESIM_CUDA_CHECK(cudaMemcpy(&total, result_, sizeof(double), cudaMemcpyDeviceToHost));
    return total;
}

double CudaBackend::sum_squares(const float* x, size_t n) {
    if (n == 0) return 0.0;
    sumsq_pass_kernel<<<kReduceBlocks, kThreads>>>(partials_, x, n, NoUpdate{});
    MOESIM_CUDA_LAUNCHED(sumsq_pass_kernel);
    return finish_sum();
}

void CudaBackend::adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamHyper& h,
                            float grad_scale, double* grad_sumsq) {
    if (n == 0) {
        if (grad_sumsq) *grad_sumsq = 0.0;
        return;
    }
    AdamUpdate u;
    u.p = p;
    u.g = g;
    u.m = m;
    u.v = v;
    u.b1 = h.beta1;
    u.b2 = h.beta2;
    u.lr = h.lr;
    u.eps = h.eps;
    u.wd = h.weight_decay;
    u.ibc1 = 1.0f / (1.0f - float(std::pow(double(h.beta1), double(h.t))));
    u.ibc2 = 1.0f / (1.0f - float(std::pow(double(h.beta2), double(h.t))));
    u.grad_scale = grad_scale;
    sumsq_pass_kernel<<<kReduceBlocks, kThreads>>>(grad_sumsq ? partials_ : nullptr, g, n, u);
    MOESIM_CUDA_LAUNCHED(sumsq_pass_kernel);
    if (grad_sumsq) *grad_sumsq = finish_sum();
}

void CudaBackend::sgd_step(float* p, float* g, float* v, size_t n, float lr, float momentum,
                           float grad_scale, double* grad_sumsq) {
    if (n == 0) {
        if (grad_sumsq) *grad_sumsq = 0.0;
        return;
    }
    SgdUpdate u;
    u.p = p;
    u.g = g;
    u.v = v;
    u.lr = lr;
    u.momentum = momentum;
    u.grad_scale = grad_scale;
    sumsq_pass_kernel<<<kReduceBlocks, kThreads>>>(grad_sumsq ? partials_ : nullptr, g, n, u);
    MOESIM_CUDA_LAUNCHED(sumsq_pass_kernel);
    if (grad_sumsq) *grad_sumsq = finish_sum();
}

}  // namespace moe::cuda
