// Buffers owned by a backend (backend.h, "Memory"): host memory on the CPU, device memory on
// CUDA. A Buf without a backend, or with one whose memory is host memory, is a plain host array,
// so CPU code and tests index it as before.
//
// Mirror<T>: a backend buffer with a host copy for the host code that reads or writes it (the
// routers, the statistics). On a host-memory backend the two are the same memory and down() /
// up() do nothing; on CUDA they copy.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/check.h"

namespace moe {

template <class T>
class Buf {
public:
    Buf() = default;
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
    Buf(Buf&& o) noexcept { swap(o); }
    Buf& operator=(Buf&& o) noexcept {
        Buf tmp(std::move(o));
        swap(tmp);
        return *this;
    }
    ~Buf() { reset(); }

    // n zeroed elements in be's memory (be null: host memory); the old contents are dropped.
    void allocate(Backend* be, size_t n) {
        reset();
        n_ = n;
        if (be && !be->host_memory()) {
            be_ = be;
            dev_ = static_cast<T*>(be->alloc(n * sizeof(T)));
        } else {
            host_.assign(n, T{});
        }
    }
    T* data() { return be_ ? dev_ : host_.data(); }
    const T* data() const { return be_ ? dev_ : host_.data(); }
    size_t size() const { return n_; }
    bool empty() const { return n_ == 0; }
    // Whether data() is host memory (no backend, or a host-memory one).
    bool on_host() const { return be_ == nullptr; }
    // Host access, for host-memory buffers only.
    T& operator[](size_t i) { return host_[i]; }
    const T& operator[](size_t i) const { return host_[i]; }
    T* begin() { return host().data(); }
    T* end() { return host().data() + n_; }
    const T* begin() const { return host().data(); }
    const T* end() const { return host().data() + n_; }
    std::vector<T>& host() {
        MOESIM_CHECK(on_host(), "host access to a device buffer");
        return host_;
    }
    const std::vector<T>& host() const {
        MOESIM_CHECK(on_host(), "host access to a device buffer");
        return host_;
    }
    // A host copy of the contents (a copy of the host array when on_host()).
    std::vector<T> to_vector() const {
        if (!be_) return host_;
        std::vector<T> v(n_);
        if (n_) be_->to_host(v.data(), dev_, n_ * sizeof(T));
        return v;
    }
    // Sets the contents from n_ host values.
    void assign_from(const T* src) {
        if (!be_)
            std::copy(src, src + n_, host_.begin());
        else if (n_)
            be_->to_device(dev_, src, n_ * sizeof(T));
    }

private:
    void reset() {
        if (be_) be_->release(dev_);
        be_ = nullptr;
        dev_ = nullptr;
        host_.clear();
        host_.shrink_to_fit();
        n_ = 0;
    }
    void swap(Buf& o) noexcept {
        std::swap(be_, o.be_);
        std::swap(dev_, o.dev_);
        std::swap(host_, o.host_);
        std::swap(n_, o.n_);
    }
    Backend* be_ = nullptr;
    T* dev_ = nullptr;
    std::vector<T> host_;
    size_t n_ = 0;
};

template <class T>
class Mirror {
public:
    void allocate(Backend* be, size_t n) {
        dev_.allocate(be, n);
        if (!dev_.on_host()) host_.assign(n, T{});
    }
    T* dev() { return dev_.data(); }
    const T* dev() const { return dev_.data(); }
    T* host() { return dev_.on_host() ? dev_.data() : host_.data(); }
    const T* host() const { return dev_.on_host() ? dev_.data() : host_.data(); }
    size_t size() const { return dev_.size(); }
    // host <- backend, and backend <- host, for the first n elements.
    void down(Backend& be, size_t n) {
        if (!dev_.on_host() && n) be.to_host(host_.data(), dev_.data(), n * sizeof(T));
    }
    void up(Backend& be, size_t n) {
        if (!dev_.on_host() && n) be.to_device(dev_.data(), host_.data(), n * sizeof(T));
    }

private:
    Buf<T> dev_;
    std::vector<T> host_;
};

// Uploads n host values to a backend buffer that mirrors host data it does not own (the routing
// plan's arrays): on a host-memory backend it returns src itself, on CUDA it copies into dst.
template <class T>
const T* upload(Backend& be, Buf<T>& dst, const T* src, size_t n) {
    if (dst.on_host()) return src;
    MOESIM_CHECK(n <= dst.size(), "upload larger than its buffer");
    if (n) be.to_device(dst.data(), src, n * sizeof(T));
    return dst.data();
}

}  // namespace moe
