// The fused expert feed-forward ops (backend.h expert_ffn_forward / expert_ffn_backward): the
// CPU's segment-by-segment schedule (cpu_ffn.cpp) against the composition of the unfused ops
// (Backend's default), bit for bit at 1, 2 and 3 threads; and a finite-difference check of the
// backward against the forward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

struct FfnCase {
    std::string name;
    std::vector<int> sizes;  // rows per segment
    int D, H;
};

// The layouts: mixed lengths with empty segments (Eigen's products); short segments whose shapes
// the packing-free kernels take (cpu_small_gemm.h); one segment across the 1024-row tile with
// 2H across the 256-column tile, so large that 2 and 3 threads take the unfused ops (a whole
// segment per thread would not balance), while 1 thread fuses.
std::vector<FfnCase> ffn_cases() {
    std::vector<int> many(40);
    for (int g = 0; g < 40; ++g) many[size_t(g)] = (g * 5 + g / 7) % 7;
    return {{"mixed", {5, 0, 37, 0, 0, 1, 64, 3}, 24, 40},
            {"short", many, 32, 64},
            {"large", {1030, 0, 60, 300}, 16, 136}};
}

struct FfnData {
    Backend::FfnShape s;
    std::vector<int> off;
    std::vector<float> xd, w1, b1, w2, b2, dyd, dw1, db1, dw2, db2;
    int rows() const { return off.back(); }
};

FfnData make_data(const FfnCase& c, Activation act) {
    FfnData d;
    const int G = int(c.sizes.size()), H1 = act == Activation::swiglu ? 2 * c.H : c.H;
    d.s = {G, c.D, c.H, H1, act};
    d.off.assign(size_t(G) + 1, 0);
    for (int g = 0; g < G; ++g) d.off[size_t(g) + 1] = d.off[size_t(g)] + c.sizes[size_t(g)];
    const size_t rows = size_t(d.rows());
    d.xd = normal_vector(rows * c.D, 1);
    d.w1 = normal_vector(size_t(G) * c.D * H1, 2, 0.3f);
    d.b1 = normal_vector(size_t(G) * H1, 3);
    d.w2 = normal_vector(size_t(G) * c.H * c.D, 4, 0.3f);
    d.b2 = normal_vector(size_t(G) * c.D, 5);
    d.dyd = normal_vector(rows * c.D, 6);
    // the parameter gradients accumulate: they start from values, not zeros
    d.dw1 = normal_vector(d.w1.size(), 7);
    d.db1 = normal_vector(d.b1.size(), 8);
    d.dw2 = normal_vector(d.w2.size(), 9);
    d.db2 = normal_vector(d.b2.size(), 10);
    return d;
}

// Every output of forward then backward (in place, as the model calls it), by the backend's
// own ops (fused) or by Backend's default composition of its unfused ops.
std::vector<std::vector<float>> run_ffn(Backend& be, const FfnData& d, bool fused) {
    const size_t rows = size_t(d.rows());
    std::vector<float> xd = d.xd, pre(rows * d.s.H1), h(rows * d.s.H), yd(rows * d.s.D);
    if (fused)
        be.expert_ffn_forward(yd.data(), h.data(), pre.data(), xd.data(), d.w1.data(), d.b1.data(),
                              d.w2.data(), d.b2.data(), d.off.data(), d.s);
    else
        be.Backend::expert_ffn_forward(yd.data(), h.data(), pre.data(), xd.data(), d.w1.data(),
                                       d.b1.data(), d.w2.data(), d.b2.data(), d.off.data(), d.s);
    std::vector<std::vector<float>> out = {pre, h, yd};
    std::vector<float> dw1 = d.dw1, db1 = d.db1, dw2 = d.dw2, db2 = d.db2;
    if (fused)
        be.expert_ffn_backward(xd.data(), pre.data(), h.data(), dw1.data(), db1.data(), dw2.data(),
                               db2.data(), d.dyd.data(), xd.data(), h.data(), pre.data(),
                               d.w1.data(), d.w2.data(), d.off.data(), d.s);
    else
        be.Backend::expert_ffn_backward(xd.data(), pre.data(), h.data(), dw1.data(), db1.data(),
                                        dw2.data(), db2.data(), d.dyd.data(), xd.data(), h.data(),
                                        pre.data(), d.w1.data(), d.w2.data(), d.off.data(), d.s);
    for (auto* v : {&xd, &pre, &h, &dw1, &db1, &dw2, &db2}) out.push_back(*v);
    return out;
}

const char* const kOutputs[] = {"pre", "h", "yd", "dxd", "dpre", "dh", "dw1", "db1", "dw2", "db2"};

}  // namespace

TEST_SUITE("backend") {
    TEST_CASE("cpu expert_ffn: the fused ops give the unfused ops' bits at 1 2 and 3 threads") {
        cpu::CpuBackend be1(1);
        for (const FfnCase& c : ffn_cases())
            for (Activation act : {Activation::relu, Activation::gelu, Activation::swiglu}) {
                CAPTURE(c.name);
                CAPTURE(int(act));
                const FfnData d = make_data(c, act);
                const auto ref = run_ffn(be1, d, false);
                // every output was written (finite) and backward changed the gradients
                for (const auto& v : ref)
                    REQUIRE(
                        std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }));
                CHECK_FALSE(bit_equal(ref[6], d.dw1));
                for (int threads : {1, 2, 3}) {
                    CAPTURE(threads);
                    cpu::CpuBackend be(threads);
                    const auto fused = run_ffn(be, d, true);
                    const auto unfused = run_ffn(be, d, false);
                    for (size_t i = 0; i < ref.size(); ++i) {
                        CAPTURE(kOutputs[i]);
                        CHECK(bit_equal(fused[i], ref[i]));
                        CHECK(bit_equal(unfused[i], ref[i]));
                    }
                }
            }
    }

    TEST_CASE("cpu expert_ffn: finite-difference check of the backward") {
        // loss = sum(c * yd); its gradients in the inputs and every parameter
        for (Activation act : {Activation::relu, Activation::gelu, Activation::swiglu}) {
            CAPTURE(int(act));
            cpu::CpuBackend be(1);
            FfnData d = make_data({"small", {3, 0, 5, 2}, 6, 7}, act);
            if (act == Activation::relu)  // pre away from 0: no probe crosses the kink
                d.b1 = normal_vector(d.b1.size(), 3, 0.2f);
            const size_t rows = size_t(d.rows());
            const std::vector<float> c = d.dyd;  // the loss weights = d loss / d yd
            std::vector<float> pre(rows * d.s.H1), h(rows * d.s.H), yd(rows * d.s.D);
            auto f = [&] {
                be.expert_ffn_forward(yd.data(), h.data(), pre.data(), d.xd.data(), d.w1.data(),
                                      d.b1.data(), d.w2.data(), d.b2.data(), d.off.data(), d.s);
                return weighted_sum(c.data(), yd.data(), yd.size());
            };
            auto sig = [&] {  // relu's pattern: a probe that flips a sign is skipped
                Signature s;
                for (float v : pre) s.push_back(v > 0.0f);
                return s;
            };
            (void)f();
            std::vector<float> dxd = d.xd, dpre = pre, dh = h;
            std::vector<float> dw1(d.w1.size(), 0.0f), db1(d.b1.size(), 0.0f),
                dw2(d.w2.size(), 0.0f), db2(d.b2.size(), 0.0f);
            be.expert_ffn_backward(dxd.data(), dpre.data(), dh.data(), dw1.data(), db1.data(),
                                   dw2.data(), db2.data(), c.data(), d.xd.data(), h.data(),
                                   pre.data(), d.w1.data(), d.w2.data(), d.off.data(), d.s);
            expect_gradient(check_gradient(f, d.xd.data(), dxd.data(), d.xd.size(), {}, sig), "dxd",
                            1e-3);
            expect_gradient(check_gradient(f, d.w1.data(), dw1.data(), d.w1.size(), {}, sig), "dw1",
                            1e-3);
            expect_gradient(check_gradient(f, d.b1.data(), db1.data(), d.b1.size(), {}, sig), "db1",
                            1e-3);
            expect_gradient(check_gradient(f, d.w2.data(), dw2.data(), d.w2.size(), {}, sig), "dw2",
                            1e-3);
            expect_gradient(check_gradient(f, d.b2.data(), db2.data(), d.b2.size(), {}, sig), "db2",
                            1e-3);
        }
    }
}
