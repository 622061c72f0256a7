// The aliasing that backend.h allows, on the CPU backend: act_backward with dpre == pre and
// combine_by_token_backward with dY == Y give the same bits as with separate buffers (the MoE layer
// relies on both to reuse its forward workspaces in backward).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"

using namespace moe;

namespace {

std::vector<float> wavy(size_t n, float phase) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = std::sin(0.917f * float(i) + phase) * 2.0f;
    return x;
}

}  // namespace

TEST_SUITE("backend") {
    TEST_CASE("act_backward in place (dpre == pre) equals out of place, every activation") {
        // 70 rows x 300: more than one parallel piece, and a GELU block tail
        const int rows = 70, H = 300;
        for (int threads : {1, 2}) {
            cpu::CpuBackend be(threads);
            for (Activation act : {Activation::relu, Activation::gelu, Activation::swiglu}) {
                const int H1 = act == Activation::swiglu ? 2 * H : H;
                const std::vector<float> pre = wavy(size_t(rows) * H1, 0.3f),
                                         dh = wavy(size_t(rows) * H, 1.1f);
                std::vector<float> out(pre.size()), inplace = pre;
                be.act_backward(out.data(), dh.data(), pre.data(), rows, H, act);
                be.act_backward(inplace.data(), dh.data(), inplace.data(), rows, H, act);
                CHECK(inplace == out);
            }
        }
    }

    TEST_CASE("combine_by_token_backward with dY == Y equals separate buffers") {
        // 3 tokens with 1, 2 and 2 assignments, D = 3; rows of Y in a scattered order
        const int T = 3, D = 3;
        const std::vector<int> tok_off = {0, 1, 3, 5}, tok_assign = {2, 0, 3, 1, 4};
        const std::vector<float> w = {0.7f, 0.6f, 0.4f, 0.5f, 0.5f};
        const std::vector<float> Y = wavy(5 * D, 0.5f), dout = wavy(T * D, 2.0f);
        std::vector<float> dY(Y.size(), 0.0f), dw(5), dw2(5);
        cpu::CpuBackend be(1);
        be.combine_by_token_backward(dY.data(), dw.data(), dout.data(), Y.data(), tok_off.data(),
                                     tok_assign.data(), w.data(), T, D);
        std::vector<float> shared = Y;
        be.combine_by_token_backward(shared.data(), dw2.data(), dout.data(), shared.data(),
                                     tok_off.data(), tok_assign.data(), w.data(), T, D);
        CHECK(shared == dY);
        CHECK(dw2 == dw);
        CHECK(dw[0] != 0.0f);
    }

}  // TEST_SUITE
