// Gradient checks by central finite differences (mlpack CheckGradient, STYLE.md "gradient").
//
//   numeric[i] = (f(p + h e_i) - f(p - h e_i)) / (p_i^+ - p_i^-),  h = eps * max(1, |p_i|)
//
// where p_i^+ and p_i^- are the float values actually stored (the step is measured after
// rounding). f returns the loss in double; the model computes in float32, so the numeric
// gradient carries float noise of about ulp(loss) / h, which is why the tolerances of these
// tests are ~1e-3 and not the 1e-6 a double-precision check would reach.
//
// Piecewise functions (top-k selection, capacity drops, relu): `signature` returns the discrete
// state of the last f() call (e.g. the routing plan's sel and kept). A probe whose signature at
// +h or -h differs from the one at p crossed a boundary; it is skipped and counted, never used.
//
// The error over the probed entries is rel = ||g - g_num|| / (||g|| + ||g_num||) (0 when both
// are 0); for tensors whose gradient is ~0 the absolute error ||g - g_num|| decides instead.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "backend/rng.h"

namespace moe::test {

using Signature = std::vector<int>;

struct GradCheckOptions {
    double eps = 1e-3;      // relative step: h = eps * max(1, |p|)
    size_t max_probes = 0;  // 0 = probe every entry; else a seeded random subset
    uint64_t seed = 12345;  // picks the subset
};

struct GradCheckResult {
    double rel_error = 0.0;  // ||g - g_num|| / (||g|| + ||g_num||) over the used probes
    double abs_error = 0.0;  // ||g - g_num||
    double norm_analytic = 0.0, norm_numeric = 0.0;
    int probes = 0;    // probes used
    int skipped = 0;   // probes that crossed a boundary (signature changed)
    size_t worst = 0;  // the entry with the largest |g - g_num|
    double worst_analytic = 0.0, worst_numeric = 0.0;
};

// Checks the analytic gradient g (n) of f against central differences in the n values at p.
// f() reads p; p is restored exactly after every probe.
template <class F, class S>
GradCheckResult check_gradient(F&& f, float* p, const float* g, size_t n,
                               const GradCheckOptions& opt, S&& signature) {
    GradCheckResult r;
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), size_t(0));
    if (opt.max_probes > 0 && n > opt.max_probes) {
        // partial Fisher-Yates with the counter-based generator: a fixed subset per seed
        const Rng rng{opt.seed, 99, 0};
        for (size_t i = 0; i < opt.max_probes; ++i)
            std::swap(idx[i], idx[i + size_t(rng.uniform_int(i, n - i))]);
        idx.resize(opt.max_probes);
        std::sort(idx.begin(), idx.end());
    }
    (void)f();
    const Signature base = signature();
    double err2 = 0.0, ga2 = 0.0, gn2 = 0.0, worst = -1.0;
    for (size_t i : idx) {
        const float p0 = p[i];
        const double h = opt.eps * std::max(1.0, std::fabs(double(p0)));
        const float pp = float(double(p0) + h), pm = float(double(p0) - h);
        p[i] = pp;
        const double fp = f();
        const bool same_p = signature() == base;
        p[i] = pm;
        const double fm = f();
        const bool same_m = signature() == base;
        p[i] = p0;
        if (!same_p || !same_m) {
            ++r.skipped;
            continue;
        }
        const double num = (fp - fm) / (double(pp) - double(pm));
        const double ana = g[i];
        const double d = ana - num;
        err2 += d * d;
        ga2 += ana * ana;
        gn2 += num * num;
        ++r.probes;
        if (std::fabs(d) > worst) {
            worst = std::fabs(d);
            r.worst = i;
            r.worst_analytic = ana;
            r.worst_numeric = num;
        }
    }
    (void)f();  // leave the function's state as it was at p
    r.abs_error = std::sqrt(err2);
    r.norm_analytic = std::sqrt(ga2);
    r.norm_numeric = std::sqrt(gn2);
    const double den = r.norm_analytic + r.norm_numeric;
    r.rel_error = den > 0.0 ? r.abs_error / den : 0.0;
    return r;
}

template <class F>
GradCheckResult check_gradient(F&& f, float* p, const float* g, size_t n,
                               const GradCheckOptions& opt = {}) {
    return check_gradient(f, p, g, n, opt, [] { return Signature{}; });
}

// The doctest verdict on one check: rel <= rel_tol, or abs <= abs_tol (a gradient that is ~0,
// where the relative error is float noise over noise); at most max_skip of the probes skipped.
// MOESIM_GRAD_VERBOSE=1 prints every result (used to choose the tolerances).
inline void expect_gradient(const GradCheckResult& r, const std::string& what, double rel_tol,
                            double abs_tol = 1e-5, double max_skip = 0.25) {
    if (const char* v = std::getenv("MOESIM_GRAD_VERBOSE"); v && *v == '1')
        MESSAGE(what << ": rel " << r.rel_error << " abs " << r.abs_error << " |g| "
                     << r.norm_analytic << " probes " << r.probes << " skipped " << r.skipped);
    INFO(what << ": rel " << r.rel_error << " abs " << r.abs_error << " |g| " << r.norm_analytic
              << " |g_num| " << r.norm_numeric << " probes " << r.probes << " skipped " << r.skipped
              << "; worst entry " << r.worst << ": analytic " << r.worst_analytic << " numeric "
              << r.worst_numeric);
    CHECK(r.probes > 0);
    CHECK(double(r.skipped) <= max_skip * double(r.probes + r.skipped));
    CHECK((r.rel_error <= rel_tol || r.abs_error <= abs_tol));
}

// Seeded N(0, std^2) values (stream 98 of the project generator: independent of everything the
// model draws).
inline void fill_normal(float* x, size_t n, uint64_t seed, float std = 1.0f, float mean = 0.0f) {
    const Rng rng{seed, 98, 0};
    for (size_t i = 0; i < n; ++i) x[i] = mean + std * float(rng.normal(i));
}
inline std::vector<float> normal_vector(size_t n, uint64_t seed, float std = 1.0f) {
    std::vector<float> v(n);
    fill_normal(v.data(), n, seed, std);
    return v;
}

// sum_i w[i] * y[i] in double: the scalar loss through which layer outputs are checked.
inline double weighted_sum(const float* w, const float* y, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; ++i) s += double(w[i]) * double(y[i]);
    return s;
}

// Same size and the same bits (NaN payloads included): for results that must not depend on the
// thread count or on a code path.
inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace moe::test
