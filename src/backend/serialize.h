// Binary streams for training state (DESIGN.md "Training state has one home"): each stateful
// part writes itself to a BinaryWriter and reads itself back from a BinaryReader, so a checkpoint
// is a loop over the parts. Little-endian host layout, no padding; every vector carries its
// length and every part a 4-byte tag, so a reader that meets the wrong part or a short stream
// fails with a std::runtime_error naming what it expected, never reads garbage.
#pragma once

#include <cstdint>
#include <cstring>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace moe {

class BinaryWriter {
public:
    explicit BinaryWriter(std::ostream& os) : os_(os) {}
    void tag(std::string_view t) { bytes(t.data(), 4); }
    template <class T>
    void put(T v) {
        static_assert(std::is_trivially_copyable_v<T>);
        bytes(&v, sizeof v);
    }
    template <class T>
    void vec(const std::vector<T>& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        put<uint64_t>(v.size());
        bytes(v.data(), v.size() * sizeof(T));
    }
    void str(std::string_view s) {
        put<uint64_t>(s.size());
        bytes(s.data(), s.size());
    }

private:
    void bytes(const void* p, size_t n) {
        os_.write(static_cast<const char*>(p), std::streamsize(n));
        if (!os_) throw std::runtime_error("training state: write failed");
    }
    std::ostream& os_;
};

class BinaryReader {
public:
    explicit BinaryReader(std::istream& is) : is_(is) {}
    // Reads a 4-byte tag and fails unless it is t.
    void tag(std::string_view t) {
        char got[4];
        bytes(got, 4);
        if (std::memcmp(got, t.data(), 4) != 0)
            throw std::runtime_error("training state: expected part '" + std::string(t) +
                                     "', got '" + std::string(got, 4) + "'");
    }
    template <class T>
    T get() {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        bytes(&v, sizeof v);
        return v;
    }
    template <class T>
    void get(T& v) {
        v = get<T>();
    }
    // Reads a vector; expect_size >= 0 fails unless its length is that (a state sized for another
    // config is refused, not resized).
    template <class T>
    void vec(std::vector<T>& v, int64_t expect_size = -1) {
        static_assert(std::is_trivially_copyable_v<T>);
        const uint64_t n = get<uint64_t>();
        if (expect_size >= 0 && n != uint64_t(expect_size))
            throw std::runtime_error("training state: a vector of " + std::to_string(n) +
                                     " values where " + std::to_string(expect_size) +
                                     " were expected");
        if (n > (uint64_t(1) << 40) / sizeof(T))
            throw std::runtime_error("training state: implausible vector length");
        v.resize(size_t(n));
        bytes(v.data(), size_t(n) * sizeof(T));
    }
    std::string str() {
        const uint64_t n = get<uint64_t>();
        if (n > (uint64_t(1) << 30)) throw std::runtime_error("training state: implausible string");
        std::string s(size_t(n), '\0');
        bytes(s.data(), s.size());
        return s;
    }

private:
    void bytes(void* p, size_t n) {
        is_.read(static_cast<char*>(p), std::streamsize(n));
        if (size_t(is_.gcount()) != n)
            throw std::runtime_error("training state: the stream ended early");
    }
    std::istream& is_;
};

}  // namespace moe
