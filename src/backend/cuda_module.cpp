#include "backend/cuda_module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace moe {

namespace {

std::vector<std::string> candidates() {
    std::vector<std::string> out;
    if (const char* env = std::getenv("MOESIM_CUDA_MODULE"); env && *env) {
        out.emplace_back(env);
        return out;  // named: that file or nothing
    }
    std::error_code ec;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) out.push_back((exe.parent_path() / "libmoesim_cuda.so").string());
#ifdef MOESIM_CUDA_MODULE_DIR
    out.push_back(std::string(MOESIM_CUDA_MODULE_DIR) + "/libmoesim_cuda.so");
#endif
    return out;
}

CudaModule load() {
    CudaModule m;
#ifndef MOESIM_WITH_CUDA
    m.error = "this moe-sim was built without CUDA";
    return m;
#else
    std::string tried;
    for (const std::string& path : candidates()) {
        if (!std::filesystem::exists(path)) {
            tried += (tried.empty() ? "" : ", ") + path;
            continue;
        }
        void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char* e = dlerror();
            m.error = "the CUDA module " + path + " could not be loaded: " + (e ? e : "unknown");
            return m;
        }
        m.device_count = reinterpret_cast<int (*)()>(dlsym(h, "moesim_cuda_device_count"));
        m.create = reinterpret_cast<Backend* (*)(int, char*, int)>(dlsym(h, "moesim_cuda_create"));
        if (!m.device_count || !m.create) {
            m.error = "the CUDA module " + path + " lacks its entry points (a stale build?)";
            return m;
        }
        m.loaded = true;
        return m;  // never unloaded: backends made by it may live until the process ends
    }
    m.error = "the CUDA module libmoesim_cuda.so was not found (looked for " + tried +
              "; MOESIM_CUDA_MODULE names another)";
    return m;
#endif
}

}  // namespace

const CudaModule& cuda_module() {
    static const CudaModule m = load();
    return m;
}

}  // namespace moe
