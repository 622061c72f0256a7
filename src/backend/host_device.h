// MOESIM_HOST_DEVICE marks the small inline functions that the CPU backend and the CUDA kernels
// share (topk_row.h, plan_row.h): __host__ __device__ under nvcc, nothing under a C++ compiler.
#pragma once

#if defined(__CUDACC__)
#define MOESIM_HOST_DEVICE __host__ __device__
#else
#define MOESIM_HOST_DEVICE
#endif
