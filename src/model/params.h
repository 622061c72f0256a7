// All parameters of a model live in one flat buffer, their gradients in a second one of the same
// layout, so the optimizer, the gradient norm and the divergence check are single loops.
// A tensor is an offset into the buffers; pointers are taken after finalize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/buffer.h"
#include "backend/serialize.h"

namespace moe {

enum class Init { normal, zeros, ones };

struct ParamTensor {
    std::string name;
    size_t offset = 0, size = 0;
    Init init = Init::zeros;
    float std = 0.0f;  // for Init::normal
};

class ParamStore {
public:
    // Declares a tensor; returns its index. Only before finalize().
    int add(std::string name, size_t size, Init init, float std = 0.0f);
    // Allocates the buffers in be's memory (null: host memory) and initialises every tensor from
    // the counter-based RNG keyed by (seed, kStreamInit, tensor index, element), so adding a
    // tensor never changes the others.
    void finalize(uint64_t seed, Backend* be = nullptr);

    float* p(int tensor) { return data_.data() + tensors_[tensor].offset; }
    float* g(int tensor) { return grad_.data() + tensors_[tensor].offset; }
    const float* p(int tensor) const { return data_.data() + tensors_[tensor].offset; }
    Buf<float>& data() { return data_; }
    Buf<float>& grad() { return grad_; }
    const std::vector<ParamTensor>& tensors() const { return tensors_; }
    size_t size() const { return total_; }
    const Buf<float>& data() const { return data_; }
    const Buf<float>& grad() const { return grad_; }

    // Values and gradients (a state of the same layout: names and sizes must match), copied
    // through the host when the buffers are device memory.
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

private:
    std::vector<ParamTensor> tensors_;
    Buf<float> data_, grad_;
    size_t total_ = 0;
};

}  // namespace moe
