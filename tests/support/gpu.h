// The CUDA tests' skip rule: where no CUDA backend can be made (a build without CUDA, or no GPU)
// a CUDA test prints one "SKIPPED: ..." line (stderr and the test report) and passes, unless the
// environment has MOESIM_REQUIRE_GPU=1 (the GPU machine's script sets it), where it fails.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "config/config_error.h"

namespace moe::test {

inline bool gpu_required() {
    const char* v = std::getenv("MOESIM_REQUIRE_GPU");
    return v && std::strcmp(v, "1") == 0;
}

// The CUDA backend, or null after the skip line (or, with MOESIM_REQUIRE_GPU=1, a failure).
// what: the tests skipped, for the line ("CUDA twin tests").
inline std::unique_ptr<Backend> cuda_backend_or_skip(const std::string& what, int threads = 1) {
    try {
        return backend_create(Device::cuda, threads);
    } catch (const UserError& e) {
        const std::string line = "SKIPPED: " + what + ": " + e.what();
        std::cerr << line << "\n";
        if (gpu_required())
            FAIL_CHECK("MOESIM_REQUIRE_GPU=1, and no CUDA backend: " << line);
        else
            MESSAGE(line);
        return nullptr;
    }
}

}  // namespace moe::test
