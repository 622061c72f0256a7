// How many CUDA devices this process can use (0 when the driver or a GPU is missing): tells a
// user plainly why `device: cuda` cannot run, and lets the GPU tests skip with a message.
#include <cuda_runtime.h>

#include "backend/cuda/make_backend.h"

extern "C" int moesim_cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}
