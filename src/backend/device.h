// Which devices this build and this machine can run on.
#pragma once

#include <string>

#include "config/config.h"

namespace moe {

// True when this binary was compiled with the CUDA parts (MOESIM_CUDA found nvcc).
bool cuda_compiled();
// Number of CUDA devices visible at run time (0 without CUDA, a driver or a GPU).
int cuda_device_count();
// Why `device` cannot run here, in one line ("" when it can): a build without CUDA, or no GPU.
std::string device_unavailable(Device device);

}  // namespace moe
