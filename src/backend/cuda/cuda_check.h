// Error checks for the CUDA backend: every CUDA runtime and cuBLAS call goes through one of these,
// and every kernel launch is followed by MOESIM_CUDA_LAUNCHED. A failure throws std::runtime_error
// naming the call, the file, the line and the error string.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace moe::cuda {

inline void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error: ") + call + " at " + file + ":" +
                                 std::to_string(line) + ": " + cudaGetErrorName(err) + ": " +
                                 cudaGetErrorString(err));
}

inline void check_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
    if (st != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error(std::string("cuBLAS error: ") + call + " at " + file + ":" +
                                 std::to_string(line) + ": " + cublasGetStatusName(st) + ": " +
                                 cublasGetStatusString(st));
}

}  // namespace moe::cuda

#define MOESIM_CUDA_CHECK(call) ::moe::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define MOESIM_CUBLAS_CHECK(call) ::moe::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: the launch's own error (a bad configuration, no kernel image for the GPU).
#define MOESIM_CUDA_LAUNCHED(kernel) \
    ::moe::cuda::check_cuda(cudaGetLastError(), "launch of " #kernel, __FILE__, __LINE__)
