// The CUDA module's entry points. The CUDA backend is built as a module (libmoesim_cuda.so) that
// moe-sim loads only when device: cuda is asked for (backend/cuda_module.cpp), so a CPU run never
// maps the CUDA and cuBLAS libraries (about 200 MB and a tenth of a second at every start). These
// are the module's only exported names, with C linkage so that they are found by name.
#pragma once

#include "backend/backend.h"

extern "C" {
// The number of CUDA devices this process can use (0 when the driver or a GPU is missing).
__attribute__((visibility("default"))) int moesim_cuda_device_count();
// A new backend on CUDA device 0 with `threads` host threads, owned by the caller (delete it
// through Backend's virtual destructor); null after writing the reason into error (its size
// error_size) when the CUDA runtime or cuBLAS cannot start.
__attribute__((visibility("default"))) moe::Backend* moesim_cuda_create(int threads, char* error,
                                                                        int error_size);
}
