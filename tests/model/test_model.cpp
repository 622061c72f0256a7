// The whole model (Model::forward + Model::backward) on a tiny config: 2 blocks, the first dense
// and the second MoE (moe_every 2). The loss is the total (cross-entropy + alpha * aux +
// z_coef * z); every parameter tensor is gradient-checked. Probes that change any MoE layer's
// plan (sel, kept) are skipped.
#include "model/model.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

void check_model(Config cfg, double factor, const std::string& what) {
    CAPTURE(what);
    const int T = 8, Din = 5, C = 3;
    auto be = backend_create(Device::cpu, 1);
    Model model(cfg, Din, C, T);
    ParamStore& ps = model.params();
    // well separated router logits: the router weights get std 1 instead of the small init;
    // zero-initialised tensors (biases) get small random values so every term is exercised
    for (MoeLayer* m : model.moe_layers())
        fill_normal(ps.p(m->router_w), ps.tensors()[size_t(m->router_w)].size, 31, 1.5f);
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        if (t.init == Init::zeros) fill_normal(ps.p(int(k)), t.size, 40 + k, 0.2f);
        if (t.init == Init::ones) fill_normal(ps.p(int(k)), t.size, 40 + k, 0.2f, 1.0f);
    }
    std::vector<float> x = normal_vector(size_t(T) * Din, 32);
    std::vector<int> labels(T);
    for (int t = 0; t < T; ++t) labels[size_t(t)] = (t * 7 + 1) % C;
    Pass info;
    info.training = true;
    info.step = 5;
    info.capacity_factor = factor;

    std::fill(ps.grad().host().begin(), ps.grad().host().end(), 0.0f);
    const LossParts lp = model.forward(*be, x.data(), labels.data(), T, info);
    CHECK(lp.loss == doctest::Approx(lp.task + lp.aux + lp.z));
    model.backward(*be, T);
    const std::vector<float> grad = ps.grad().host();

    auto f = [&] { return model.forward(*be, x.data(), labels.data(), T, info).loss; };
    auto sig = [&] {
        Signature s;
        for (MoeLayer* m : model.moe_layers()) {
            const RouterState& st = m->router_state();
            const RoutingPlan& p = m->plan();
            s.insert(s.end(), st.sel.begin(), st.sel.begin() + ptrdiff_t(size_t(st.T) * st.K));
            s.insert(s.end(), p.slot.begin(), p.slot.begin() + p.A);
            if (cfg.balance.loss != BalanceLoss::shazeer) continue;
            // the smooth Load's thresholds: the order of each token's top K+1 noisy logits
            for (int t = 0; t < st.T; ++t) {
                std::vector<int> o(size_t(st.N));
                for (int i = 0; i < st.N; ++i) o[size_t(i)] = i;
                const float* z = st.noisy.data() + size_t(t) * st.N;
                std::stable_sort(o.begin(), o.end(), [z](int a, int b) { return z[a] > z[b]; });
                s.insert(s.end(), o.begin(), o.begin() + std::min(st.N, st.K + 1));
            }
        }
        return s;
    };
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        expect_gradient(check_gradient(f, ps.p(int(k)), grad.data() + t.offset, t.size, {}, sig),
                        what + " " + t.name, 3e-3);
    }
}

Config tiny_config() {
    Config cfg;
    cfg.seed = 9;
    cfg.model.d_model = 4;
    cfg.model.layers = 2;
    cfg.model.moe_every = 2;  // block 0 dense, block 1 MoE
    cfg.experts.count = 4;
    cfg.experts.d_ff = 3;
    cfg.router.k = 2;
    cfg.balance.loss = BalanceLoss::switch_loss;
    cfg.balance.alpha = 0.1;
    cfg.balance.z_loss = 0.01;
    return cfg;
}

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("model: the tiny config has one dense and one MoE block") {
        Model model(tiny_config(), 5, 3, 8);
        CHECK(model.moe_block_index() == std::vector<int>{1});
    }

    TEST_CASE("model: gradient check, dense + MoE, switch + z-loss, dropless") {
        check_model(tiny_config(), 0.0, "dropless");
    }

    TEST_CASE("model: gradient check, dense + MoE, capacity drops") {
        check_model(tiny_config(), 0.75, "factor=0.75");
    }

    TEST_CASE("model: gradient check, shazeer loss with gating noise, swiglu, shared expert") {
        Config cfg = tiny_config();
        cfg.balance.loss = BalanceLoss::shazeer;
        cfg.router.noise = 1.0;
        cfg.experts.activation = Activation::swiglu;
        cfg.experts.shared = 1;
        check_model(cfg, 0.0, "shazeer");
    }

    TEST_CASE("model: gradient check with model.output_softmax") {
        Config cfg = tiny_config();
        cfg.model.output_softmax = true;
        check_model(cfg, 0.0, "output_softmax");
    }

    TEST_CASE("model: output_softmax's loss is the cross-entropy of softmax(logits) by hand") {
        // the same model and batch with and without the option: the logits are the same, the
        // task loss is mean_t -log softmax(softmax(z_t))[y_t] from those logits, the accuracy the
        // same
        const int T = 8, Din = 5, C = 3;
        auto be = backend_create(Device::cpu, 1);
        const std::vector<float> x = normal_vector(size_t(T) * Din, 32, 3.0f);
        std::vector<int> labels(T);
        for (int t = 0; t < T; ++t) labels[size_t(t)] = (t * 7 + 1) % C;
        Pass info;
        info.training = false;
        Config plain = tiny_config(), twice = tiny_config();
        twice.model.output_softmax = true;
        Model m1(plain, Din, C, T), m2(twice, Din, C, T);
        const LossParts l1 = m1.forward(*be, x.data(), labels.data(), T, info);
        const LossParts l2 = m2.forward(*be, x.data(), labels.data(), T, info);
        const std::vector<float> z(m2.logits(), m2.logits() + size_t(T) * C);
        CHECK(std::equal(z.begin(), z.end(), m1.logits()));
        double want = 0.0, plain_want = 0.0;
        for (int t = 0; t < T; ++t) {
            const float* zt = z.data() + size_t(t) * C;
            double zmax = zt[0], s = 0.0;
            for (int c = 1; c < C; ++c) zmax = std::max(zmax, double(zt[c]));
            for (int c = 0; c < C; ++c) s += std::exp(zt[c] - zmax);
            std::vector<double> p(static_cast<size_t>(C));
            for (int c = 0; c < C; ++c) p[size_t(c)] = std::exp(zt[c] - zmax) / s;
            double s2 = 0.0;
            for (int c = 0; c < C; ++c) s2 += std::exp(p[size_t(c)]);
            const int y = labels[size_t(t)];
            want += -(p[size_t(y)] - std::log(s2)) / T;
            plain_want += -(zt[y] - zmax - std::log(s)) / T;
        }
        CHECK(l1.task == doctest::Approx(plain_want).epsilon(1e-5));
        CHECK(l2.task == doctest::Approx(want).epsilon(1e-5));
        CHECK(l2.task > std::log(1.0 + 2.0 * std::exp(-1.0)) - 1e-6);  // the floor with 3 classes
        CHECK(l2.correct == l1.correct);
    }

}  // TEST_SUITE
