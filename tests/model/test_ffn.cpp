// Dense FFN y = act(x W1 + b1) W2 + b2 for each activation: gradient check of every parameter
// and of dx. relu is piecewise: the signature is the sign pattern of the pre-activations, so a
// probe that moves one across 0 is skipped.
#include "model/layers/ffn.h"

#include <doctest/doctest.h>

#include <vector>

#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

void check_ffn(Activation act, const char* name) {
    CAPTURE(name);
    const int T = 6, D = 5, H = 4;
    auto be = backend_create(Device::cpu, 1);
    ParamStore ps;
    Ffn ffn;
    ffn.declare(ps, "ffn", D, H, act);
    ps.finalize(11);
    // non-zero biases so that every term of the backward is exercised
    fill_normal(ps.p(ffn.up.b), size_t(ffn.up.out), 12, 0.3f);
    fill_normal(ps.p(ffn.down.b), size_t(D), 13, 0.3f);
    ffn.reserve(T);
    std::vector<float> x = normal_vector(size_t(T) * D, 14);
    const std::vector<float> w = normal_vector(size_t(T) * D, 15);
    std::vector<float> y(size_t(T) * D), dx(size_t(T) * D);

    std::fill(ps.grad().begin(), ps.grad().end(), 0.0f);
    ffn.forward(*be, ps, y.data(), x.data(), T);
    ffn.backward(*be, ps, dx.data(), w.data(), x.data(), T, false);

    auto f = [&] {
        ffn.forward(*be, ps, y.data(), x.data(), T);
        return weighted_sum(w.data(), y.data(), y.size());
    };
    auto sig = [&] {
        Signature s;
        if (act == Activation::relu)
            for (size_t i = 0; i < size_t(T) * ffn.up.out; ++i) s.push_back(ffn.pre[i] > 0.0f);
        return s;
    };
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        expect_gradient(check_gradient(f, ps.p(int(k)), ps.g(int(k)), t.size, {}, sig), t.name,
                        2e-3);
    }
    expect_gradient(check_gradient(f, x.data(), dx.data(), x.size(), {}, sig), "dx", 2e-3);
}

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("ffn: gradient check, relu (probes across 0 skipped)") {
        check_ffn(Activation::relu, "relu");
    }
    TEST_CASE("ffn: gradient check, gelu") {
        check_ffn(Activation::gelu, "gelu");
    }
    TEST_CASE("ffn: gradient check, swiglu") {
        check_ffn(Activation::swiglu, "swiglu");
    }

}  // TEST_SUITE
