// The CUDA backend's memory (backend.h, "Memory"): device memory, allocated zeroed; the copies
// between the host and the device are synchronous (cudaMemcpy returns once the data is there, so
// a host buffer may be reused at once).
#include <exception>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moe::cuda {

void* CudaBackend::alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    MOESIM_CUDA_CHECK(cudaMalloc(&p, bytes));
    try {
        MOESIM_CUDA_CHECK(cudaMemset(p, 0, bytes));
    } catch (...) {
        cudaFree(p);
        throw;
    }
    return p;
}

// Buffers release their memory in destructors, also while an exception (say, a failed launch)
// unwinds the stack: a second exception would terminate the program and hide the first, so an
// error here is reported only when no exception is in flight.
void CudaBackend::release(void* p) {
    if (!p) return;
    const cudaError_t err = cudaFree(p);
    if (std::uncaught_exceptions() == 0) check_cuda(err, "cudaFree(p)", __FILE__, __LINE__);
}

void CudaBackend::to_device(void* dst, const void* host_src, size_t bytes) {
    if (bytes) MOESIM_CUDA_CHECK(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
}

void CudaBackend::to_host(void* host_dst, const void* src, size_t bytes) {
    if (bytes) MOESIM_CUDA_CHECK(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
    if (bytes) MOESIM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

void CudaBackend::fill_zero(void* p, size_t bytes) {
    if (bytes) MOESIM_CUDA_CHECK(cudaMemset(p, 0, bytes));
}

void CudaBackend::synchronize() {
    MOESIM_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace moe::cuda
