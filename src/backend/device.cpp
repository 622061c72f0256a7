#include "backend/device.h"

#ifdef MOESIM_WITH_CUDA
namespace moe::cuda {
int device_count();
}
#endif

namespace moe {

bool cuda_compiled() {
#ifdef MOESIM_WITH_CUDA
    return true;
#else
    return false;
#endif
}

int cuda_device_count() {
#ifdef MOESIM_WITH_CUDA
    return cuda::device_count();
#else
    return 0;
#endif
}

}  // namespace moe
