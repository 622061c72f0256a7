// Block reductions of the CUDA backend's kernels: a shared-memory tree over the kThreads threads
// of a block, whose shape is fixed (thread i adds thread i + w, w = kThreads / 2, ..., 1), so a
// sum depends only on the values each thread brings, never on timing.
#pragma once

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

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

// Column sums in two passes of fixed shape, for sums over many rows (tokens) of few columns
// (bias and norm-gain gradients): pass 1 sums each chunk of kColumnChunk rows of each column in
// row order into part[chunk][column]; pass 2 adds a column's chunks in chunk order to dst.
// Threads run along the columns (coalesced loads).
template <class Value>
__global__ void column_chunk_sums_kernel(float* part, int rows, int N, int chunks, Value value) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    for (int c = blockIdx.y; c < chunks; c += gridDim.y) {
        const int r0 = c * kColumnChunk, r1 = min(rows, r0 + kColumnChunk);
        float acc = 0.0f;
        for (int r = r0; r < r1; ++r) acc += value(r, j);
        part[size_t(c) * N + j] = acc;
    }
}

// static: each file that uses it has its own copy (a kernel cannot be inline).
static __global__ void add_column_chunks_kernel(float* dst, const float* part, int chunks, int N) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    float acc = 0.0f;
    for (int c = 0; c < chunks; ++c) acc += part[size_t(c) * N + j];
    dst[j] += acc;
}

// dst (N) += sum over r < rows of value(r, j), j < N (value: a device functor). scratch holds
// column_chunks(rows) * N floats. rows > 0, N > 0.
inline int column_chunks(int rows) {
    return (rows + kColumnChunk - 1) / kColumnChunk;
}
template <class Value>
void add_column_sums(float* dst, float* scratch, int rows, int N, Value value) {
    const int chunks = column_chunks(rows);
    const unsigned col_blocks = unsigned((N + kThreads - 1) / kThreads);
    const dim3 grid(col_blocks, unsigned(chunks < 65535 ? chunks : 65535));
    column_chunk_sums_kernel<<<grid, kThreads>>>(scratch, rows, N, chunks, value);
    MOESIM_CUDA_LAUNCHED(column_chunk_sums_kernel);
    add_column_chunks_kernel<<<col_blocks, kThreads>>>(dst, scratch, chunks, N);
    MOESIM_CUDA_LAUNCHED(add_column_chunks_kernel);
}

}  // namespace moe::cuda
