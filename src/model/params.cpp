#include "model/params.h"

#include <algorithm>
#include <stdexcept>

#include "backend/rng.h"

namespace moe {

int ParamStore::add(std::string name, size_t size, Init init, float std) {
    // 16-float alignment of every tensor keeps SIMD loads aligned
    const size_t offset = (total_ + 15) / 16 * 16;
    tensors_.push_back({std::move(name), offset, size, init, std});
    total_ = offset + size;
    return int(tensors_.size()) - 1;
}

void ParamStore::finalize(uint64_t seed, Backend* be) {
    std::vector<float> init(total_, 0.0f);
    for (size_t k = 0; k < tensors_.size(); ++k) {
        const ParamTensor& t = tensors_[k];
        float* d = init.data() + t.offset;
        const Rng rng{seed, kStreamInit, uint64_t(k)};
        switch (t.init) {
            case Init::zeros:
                std::fill_n(d, t.size, 0.0f);
                break;
            case Init::ones:
                std::fill_n(d, t.size, 1.0f);
                break;
            case Init::normal:
                for (size_t i = 0; i < t.size; ++i) d[i] = t.std * rng.normal(i);
                break;
        }
    }
    data_.allocate(be, total_);
    grad_.allocate(be, total_);
    data_.assign_from(init.data());
}

void ParamStore::save(BinaryWriter& w) const {
    w.tag("PARM");
    w.put<uint64_t>(tensors_.size());
    for (const ParamTensor& t : tensors_) {
        w.str(t.name);
        w.put<uint64_t>(t.size);
    }
    w.vec(data_.to_vector());
    w.vec(grad_.to_vector());
}

void ParamStore::load(BinaryReader& r) {
    r.tag("PARM");
    if (r.get<uint64_t>() != tensors_.size())
        throw std::runtime_error("training state: the model has another number of tensors");
    for (const ParamTensor& t : tensors_) {
        const std::string name = r.str();
        const uint64_t size = r.get<uint64_t>();
        if (name != t.name || size != t.size)
            throw std::runtime_error("training state: tensor '" + name + "' does not match '" +
                                     t.name + "'");
    }
    std::vector<float> v;
    r.vec(v, int64_t(total_));
    data_.assign_from(v.data());
    r.vec(v, int64_t(total_));
    grad_.assign_from(v.data());
}

}  // namespace moe
