// The CPU backend's memory (backend.h, "Memory"): host memory, so the copies between the host and
// the backend are plain copies, and nothing when source and destination are the same.
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cpu/cpu_backend.h"

namespace moe::cpu {

void* CpuBackend::alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = std::calloc(1, bytes);
    if (!p) throw std::bad_alloc();
    return p;
}

void CpuBackend::release(void* p) {
    std::free(p);
}

void CpuBackend::to_device(void* dst, const void* host_src, size_t bytes) {
    if (dst != host_src && bytes) std::memcpy(dst, host_src, bytes);
}

void CpuBackend::to_host(void* host_dst, const void* src, size_t bytes) {
    if (host_dst != src && bytes) std::memcpy(host_dst, src, bytes);
}

void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
}

void CpuBackend::fill_zero(void* p, size_t bytes) {
    if (bytes) std::memset(p, 0, bytes);
}

}  // namespace moe::cpu
