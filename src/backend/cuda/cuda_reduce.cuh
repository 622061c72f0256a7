// Block reductions of the CUDA backend's kernels: a shared-memory tree over the kThreads threads
// of a block, whose shape is fixed (thread i adds thread i + w, w = kThreads / 2, ..., 1), so a
// sum depends only on the values each thread brings, never on timing.
#pragma once

#include "backend/cuda/cuda_backend.h"

namespace moe::cuda {

// The sum of v over the block's threads, returned to every thread. Every thread of the block must
// call it (it synchronises the block); s is kThreads values of shared memory, reusable after.
template <class T>
__device__ T block_sum(T v, T* s) {
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if (int(threadIdx.x) < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    const T r = s[0];
    __syncthreads();
    return r;
}

// The largest of v over the block (NaN where a thread brings NaN is not propagated: fmaxf).
__device__ inline float block_max(float v, float* s) {
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if (int(threadIdx.x) < w) s[threadIdx.x] = fmaxf(s[threadIdx.x], s[threadIdx.x + w]);
        __syncthreads();
    }
    const float r = s[0];
    __syncthreads();
    return r;
}

}  // namespace moe::cuda
