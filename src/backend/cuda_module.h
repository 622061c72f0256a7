// The CUDA module (backend/cuda/make_backend.h), loaded on first use: the CUDA backend lives in
// libmoesim_cuda.so so that a CPU run never maps the CUDA libraries. Where it is looked for, in
// order: the file the environment variable MOESIM_CUDA_MODULE names; libmoesim_cuda.so next to
// the running executable; the build directory the binary was built in.
#pragma once

#include <string>

#include "backend/backend.h"

namespace moe {

struct CudaModule {
    bool loaded = false;
    std::string error;  // why it is not loaded ("" when loaded)
    int (*device_count)() = nullptr;
    Backend* (*create)(int threads, char* error, int error_size) = nullptr;
};

// The module, loaded at the first call (thread-safe), or why it could not be. Only in a build
// with the CUDA parts; elsewhere loaded is false.
const CudaModule& cuda_module();

}  // namespace moe
