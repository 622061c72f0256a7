#include "backend/device.h"

#include "backend/cuda_module.h"

namespace moe {

bool cuda_compiled() {
#ifdef MOESIM_WITH_CUDA
    return true;
#else
    return false;
#endif
}

int cuda_device_count() {
    if (!cuda_compiled()) return 0;
    const CudaModule& m = cuda_module();
    return m.loaded ? m.device_count() : 0;
}

std::string device_unavailable(Device device) {
    if (device != Device::cuda) return {};
    if (!cuda_compiled())
        return "device 'cuda' is not available: this moe-sim was built without CUDA (configure it "
               "where the CUDA toolkit is installed), use device: cpu";
    if (const CudaModule& m = cuda_module(); !m.loaded)
        return "device 'cuda' is not available: " + m.error + "; use device: cpu";
    if (cuda_device_count() == 0)
        return "device 'cuda' is not available: no CUDA GPU is visible to this process (no GPU, "
               "no driver, or CUDA_VISIBLE_DEVICES hides it); use device: cpu";
    return {};
}

}  // namespace moe
