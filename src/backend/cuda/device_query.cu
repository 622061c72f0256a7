// How many CUDA devices this process can use (0 when the driver or a GPU is missing).
// Used to tell a user plainly why `device: cuda` cannot run, and to skip GPU tests with a message.
#include <cuda_runtime.h>

namespace moe::cuda {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

}  // namespace moe::cuda
