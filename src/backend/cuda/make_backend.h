// The CUDA backend's factory: the one name of backend/cuda/ that the rest of backend/ calls. It
// includes no CUDA header, so the CPU backend's backend_create can call it.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace moe::cuda {

// The backend on CUDA device 0, with `threads` host threads for the host-side code. Throws
// std::runtime_error when the CUDA runtime or cuBLAS cannot start.
std::unique_ptr<Backend> make_backend(int threads);

}  // namespace moe::cuda
