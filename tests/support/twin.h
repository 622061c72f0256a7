// The twin harness (DESIGN.md, "Tests": twins): one op run on two backends from the same host
// inputs, and its outputs compared.
//
// A Case is a name, the backend.h op it checks, a bound and a body. The body draws its inputs
// from a Draw seeded by the case's name (counter-based, src/backend/rng.h: the same values on
// every call), uploads them into the backend it is given, runs the op and keeps the outputs it
// downloads (TwinRun::keep). It may also record a failure of a property that one backend must
// satisfy on its own (TwinRun::fail: an optimizer step leaves the gradient zero).
//
// Outputs that an op overwrites start as NaN (TwinRun::poison), so an element it fails to write
// is seen; outputs that it accumulates into start from random values. Every kept value must be
// finite on both backends.
//
// compare_twins() holds two runs of a case against each other, either bit for bit (the CPU at 1
// and at 2 threads; a device against itself) or within a relative bound in double,
//     ||got - ref|| / ||ref||     (ref = the CPU; 0 required when ||ref|| = 0),
// the case's bound unless the kept array names its own. A bound of 0 asks for equal bits.
//
// Pointers: every pointer an op takes is backend memory (a TwinArray), except the grouped ops'
// segment offsets `off` and the scalars ops return (cross_entropy's count, the optimizers'
// grad_sumsq), which are host memory (backend.h, "Memory").
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/rng.h"

namespace moe::test {

// A backend allocation of n values, released through the backend (RAII, move-only).
template <class T>
class TwinArray {
public:
    TwinArray(Backend& be, size_t n)
        : be_(&be), n_(n), p_(static_cast<T*>(be.alloc(n * sizeof(T)))) {}
    // Uploads host values (to_device).
    TwinArray(Backend& be, const std::vector<T>& host) : TwinArray(be, host.size()) {
        if (n_) be_->to_device(p_, host.data(), n_ * sizeof(T));
    }
    TwinArray(const TwinArray&) = delete;
    TwinArray& operator=(const TwinArray&) = delete;
    TwinArray(TwinArray&& o) noexcept
        : be_(std::exchange(o.be_, nullptr)),
          n_(std::exchange(o.n_, 0)),
          p_(std::exchange(o.p_, nullptr)) {}
    TwinArray& operator=(TwinArray&&) = delete;
    ~TwinArray() {
        if (be_) be_->release(p_);
    }

    T* get() const { return p_; }
    size_t size() const { return n_; }
    // Downloads the values (to_host).
    std::vector<T> download() const {
        std::vector<T> h(n_);
        if (n_) be_->to_host(h.data(), p_, n_ * sizeof(T));
        return h;
    }

private:
    Backend* be_;
    size_t n_;
    T* p_;
};

template <class T>
TwinArray<T> upload(Backend& be, const std::vector<T>& host) {
    return TwinArray<T>(be, host);
}

// Seeded random inputs: each array draws from its own step of a counter-based stream, element i
// at index i; the values are never 0.
class Draw {
public:
    explicit Draw(uint64_t seed) : rng_{seed, kStream, 0} {}

    // Normal with standard deviation `scale` (both normals of each block: elements 2i, 2i+1).
    std::vector<float> normal(size_t n, float scale = 1.0f) {
        const Rng r = next();
        std::vector<float> v(n);
        for (size_t i = 0; i < n; i += 2) {
            const NormalPair z = r.normal2(i / 2);
            v[i] = nonzero(scale * float(z.first), scale);
            if (i + 1 < n) v[i + 1] = nonzero(scale * float(z.second), scale);
        }
        return v;
    }
    // Uniform in [-scale, scale): cheaper than normal(), for the long inputs.
    std::vector<float> signed_uniform(size_t n, float scale = 1.0f) {
        const Rng r = next();
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = nonzero(scale * (2.0f * r.uniform(i) - 1.0f), scale);
        return v;
    }
    // Uniform in [lo, hi) (lo > 0 keeps them away from 0).
    std::vector<float> uniform(size_t n, float lo, float hi) {
        const Rng r = next();
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * r.uniform(i);
        return v;
    }
    // Integers in [0, n_values).
    std::vector<int> ints(size_t n, int n_values) {
        const Rng r = next();
        std::vector<int> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = int(r.uniform_int(i, uint64_t(n_values)));
        return v;
    }
    int one_int(int n_values) { return ints(1, n_values)[0]; }
    // A random permutation of 0..n-1 (Fisher-Yates).
    std::vector<int> permutation(int n) {
        const Rng r = next();
        std::vector<int> v(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) v[size_t(i)] = i;
        for (int i = n - 1; i > 0; --i)
            std::swap(v[size_t(i)], v[r.uniform_int(uint64_t(i), uint64_t(i) + 1)]);
        return v;
    }

private:
    static float nonzero(float v, float scale) { return v == 0.0f ? 0.5f * scale : v; }
    static constexpr uint64_t kStream = 0x7417;  // tests only: not one of rng.h's streams
    Rng next() {
        Rng r = rng_;
        r.step = step_++;
        return r;
    }
    Rng rng_;
    uint64_t step_ = 0;
};

// One kept output: its values (floats and counts are exact in double) and its own bound
// (negative: the case's).
struct TwinOutput {
    std::string name;
    std::vector<double> values;
    double bound = -1.0;
};
struct TwinOutputs {
    std::vector<TwinOutput> arrays;
    std::vector<std::string> failures;  // properties one backend broke on its own
};

// What a case's body gets: the backend, its inputs' generator, and where its outputs go.
struct TwinRun {
    Backend& be;
    Draw draw;
    TwinOutputs out;

    template <class T>
    TwinArray<T> up(const std::vector<T>& host) {
        return TwinArray<T>(be, host);
    }
    // n NaNs, uploaded: the output of an op that overwrites.
    TwinArray<float> poison(size_t n) {
        return up(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
    }
    template <class T>
    void keep(const std::string& name, const TwinArray<T>& a, double bound = -1.0) {
        const std::vector<T> h = a.download();
        keep(name, std::vector<double>(h.begin(), h.end()), bound);
    }
    void keep(const std::string& name, std::vector<double> values, double bound = -1.0) {
        out.arrays.push_back({name, std::move(values), bound});
    }
    void fail(const std::string& what) { out.failures.push_back(what); }
};

struct TwinCase {
    std::string name;  // unique
    std::string op;    // the backend.h op it checks
    double bound;      // ||got - ref|| / ||ref|| allowed between devices (0: equal bits)
    std::function<void(TwinRun&)> body;
};

inline std::vector<TwinCase>& twin_registry() {
    static std::vector<TwinCase> cases;
    return cases;
}
inline void add_twin_case(std::string name, std::string op, double bound,
                          std::function<void(TwinRun&)> body) {
    twin_registry().push_back({std::move(name), std::move(op), bound, std::move(body)});
}

// FNV-1a of the name: each case draws its own inputs, the same on every run.
inline uint64_t twin_seed(const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

inline TwinOutputs run_twin(const TwinCase& c, Backend& be) {
    TwinRun r{be, Draw(twin_seed(c.name)), {}};
    c.body(r);
    return std::move(r.out);
}

enum class TwinCompare { bitwise, bounded };

// ||got - ref|| / ||ref|| in double; 0 when both are 0, infinity when only ref is.
inline double twin_rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
        diff += (got[i] - ref[i]) * (got[i] - ref[i]);
        norm += ref[i] * ref[i];
    }
    if (diff == 0.0) return 0.0;
    return norm > 0.0 ? std::sqrt(diff / norm) : std::numeric_limits<double>::infinity();
}

// The problems of `got` against `ref` (empty: they agree); worst receives the largest
// error / bound of the bounded arrays (0 when all are equal).
inline std::vector<std::string> compare_twins(const TwinOutputs& got, const TwinOutputs& ref,
                                              double case_bound, TwinCompare mode,
                                              double* worst = nullptr) {
    std::vector<std::string> problems;
    for (const std::string& f : ref.failures) problems.push_back("reference run: " + f);
    for (const std::string& f : got.failures) problems.push_back("compared run: " + f);
    if (worst) *worst = 0.0;
    if (got.arrays.size() != ref.arrays.size()) {
        problems.push_back("kept " + std::to_string(got.arrays.size()) + " arrays, reference " +
                           std::to_string(ref.arrays.size()));
        return problems;
    }
    for (size_t k = 0; k < ref.arrays.size(); ++k) {
        const TwinOutput &a = got.arrays[k], &b = ref.arrays[k];
        if (a.name != b.name || a.values.size() != b.values.size()) {
            problems.push_back(a.name + " (" + std::to_string(a.values.size()) + " values) vs " +
                               b.name + " (" + std::to_string(b.values.size()) + " values)");
            continue;
        }
        bool finite = true;
        for (size_t i = 0; i < b.values.size() && finite; ++i) {
            for (const TwinOutput* o : {&a, &b})
                if (!std::isfinite(o->values[i])) {
                    problems.push_back(b.name + "[" + std::to_string(i) + "] is " +
                                       std::to_string(o->values[i]) + " in the " +
                                       (o == &a ? "compared" : "reference") +
                                       " run (unwritten, or not finite)");
                    finite = false;
                    break;
                }
        }
        if (!finite) continue;
        const double bound = b.bound >= 0.0 ? b.bound : case_bound;
        if (mode == TwinCompare::bitwise || bound == 0.0) {
            for (size_t i = 0; i < b.values.size(); ++i)
                if (std::memcmp(&a.values[i], &b.values[i], sizeof(double)) != 0) {
                    problems.push_back(b.name + "[" + std::to_string(i) +
                                       "]: " + std::to_string(a.values[i]) + " vs " +
                                       std::to_string(b.values[i]) + ", bits differ");
                    break;
                }
            continue;
        }
        const double e = twin_rel_error(a.values, b.values);
        if (worst && e / bound > *worst) *worst = e / bound;
        if (!(e <= bound)) {
            char msg[160];
            std::snprintf(msg, sizeof msg, ": relative error %.3g above its bound %.3g", e, bound);
            problems.push_back(b.name + msg);
        }
    }
    return problems;
}

}  // namespace moe::test
