// Patch experts (experts.kind: patch), the tied router head (router.patch_tied) and the moe_only
// model (Chen et al. 2022): a forward computed by hand, and finite-difference gradient checks of
// the layer (every parameter and dx, both activations) and of the whole moe_only model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/moe_layer.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

// A moe_only config on P patches of dimension d with N patch experts of J channels, top-1.
Config patch_config(int P, int d, int N, int J, PatchActivation act, bool tied) {
    Config cfg;
    cfg.seed = 7;
    cfg.data.task = TaskKind::patch_clusters;
    cfg.data.patch_clusters.patches = P;
    cfg.data.patch_clusters.dim = d;
    cfg.model.kind = ModelKind::moe_only;
    cfg.experts.kind = ExpertKind::patch;
    cfg.experts.count = N;
    cfg.experts.patch.channels = J;
    cfg.experts.patch.activation = act;
    cfg.router.k = 1;
    cfg.router.patch_tied = tied;
    cfg.capacity.factor = 0.0;
    cfg.balance.loss = BalanceLoss::none;
    return cfg;
}

Signature plan_signature(const MoeLayer& layer) {
    const RouterState& st = layer.router_state();
    const RoutingPlan& plan = layer.plan();
    Signature s(st.sel.begin(), st.sel.begin() + ptrdiff_t(size_t(st.T) * st.K));
    s.insert(s.end(), plan.slot.begin(), plan.slot.begin() + plan.A);
    return s;
}

// The layer's gradients (every tensor and dx) against central differences of <w, y>.
void check_patch_layer(PatchActivation act, bool tied, const std::string& what) {
    CAPTURE(what);
    const int T = 12, P = 3, d = 4, N = 3, J = 2, D = P * d;
    auto be = backend_create(Device::cpu, 1);
    const Config cfg = patch_config(P, d, N, J, act, tied);
    ParamStore ps;
    MoeLayer layer(cfg, ps, "moe", 0, 1, D);
    REQUIRE(layer.out_dim() == 2);
    ps.finalize(cfg.seed);
    layer.reserve(T);
    // parameters of order 1 (not the 0.001 init) so every term of the gradient is visible, and
    // router weights large enough that the top-1 choices are well separated
    fill_normal(ps.p(layer.router_w), ps.tensors()[size_t(layer.router_w)].size, 11, 1.0f);
    fill_normal(ps.p(layer.w1), ps.tensors()[size_t(layer.w1)].size, 12, 0.5f);
    fill_normal(ps.p(layer.b1), ps.tensors()[size_t(layer.b1)].size, 13, 0.5f);
    std::vector<float> x = normal_vector(size_t(T) * D, 14);
    const std::vector<float> w = normal_vector(size_t(T) * 2, 15);
    std::vector<float> y(size_t(T) * 2), dx(size_t(T) * D);
    Pass info;
    info.training = true;
    info.step = 3;
    info.capacity_factor = 0.0;
    std::fill(ps.grad().host().begin(), ps.grad().host().end(), 0.0f);
    layer.forward(*be, ps, y.data(), x.data(), T, info);
    // every expert gets tokens (the check covers each expert's slice)
    for (int i = 0; i < N; ++i) CHECK(layer.plan().routed[size_t(i)] > 0);
    layer.backward(*be, ps, dx.data(), w.data(), x.data(), T);
    auto f = [&] {
        layer.forward(*be, ps, y.data(), x.data(), T, info);
        return weighted_sum(w.data(), y.data(), y.size());
    };
    auto sig = [&] { return plan_signature(layer); };
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        expect_gradient(check_gradient(f, ps.p(int(k)), ps.g(int(k)), t.size, {}, sig),
                        what + " " + t.name, 2e-3);
    }
    expect_gradient(check_gradient(f, x.data(), dx.data(), x.size(), {}, sig), what + " dx", 2e-3);
}

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("patch expert: forward computed by hand, cubic and linear") {
        // One expert (the gate of top-1 over a single expert is softmax = 1), P = 2 patches of
        // d = 2, J = 1: filter 0 (class 0) w = (1, 2), b = 0.5; filter 1 (class 1) w = (-1, 0),
        // b = 0. Token 0: x = [(1, 0), (0, 1)]:
        //   class 0: pre = 1.5 and 2.5 -> cubic 3.375 + 15.625 = 19, linear 4
        //   class 1: pre = -1 and 0    -> cubic -1,                linear -1
        // Token 1: x = [(0, 0), (2, -1)]:
        //   class 0: pre = 0.5 and 0.5 -> cubic 0.25, linear 1
        //   class 1: pre = 0 and -2    -> cubic -8,   linear -2
        for (PatchActivation act : {PatchActivation::cubic, PatchActivation::linear}) {
            const bool cubic = act == PatchActivation::cubic;
            CAPTURE(cubic);
            Config cfg = patch_config(2, 2, 1, 1, act, false);
            auto be = backend_create(Device::cpu, 1);
            ParamStore ps;
            MoeLayer layer(cfg, ps, "moe", 0, 1, 4);
            ps.finalize(cfg.seed);
            layer.reserve(2);
            // W1 (d, 2J) row-major: row r is input coordinate r, column j the filter
            const float w1[4] = {1.0f, -1.0f, 2.0f, 0.0f};
            const float b1[2] = {0.5f, 0.0f};
            std::copy_n(w1, 4, ps.p(layer.w1));
            std::copy_n(b1, 2, ps.p(layer.b1));
            const float x[8] = {1, 0, 0, 1, 0, 0, 2, -1};
            float y[4] = {};
            Pass info;
            info.training = false;
            info.capacity_factor = 0.0;
            layer.forward(*be, ps, y, x, 2, info);
            CHECK(y[0] == doctest::Approx(cubic ? 19.0 : 4.0));
            CHECK(y[1] == doctest::Approx(-1.0));
            CHECK(y[2] == doctest::Approx(cubic ? 0.25 : 1.0));
            CHECK(y[3] == doctest::Approx(cubic ? -8.0 : -2.0));
        }
    }

    TEST_CASE("patch expert: tied router logits are sum_p x_p Wr") {
        // P = 2 patches of d = 2, 2 experts; Wr (2, 2) = [[1, -1], [0.5, 2]].
        // x = [(1, 2), (3, -1)]: sum_p x_p = (4, 1); logits = (4 + 0.5, -4 + 2) = (4.5, -2).
        Config cfg = patch_config(2, 2, 2, 1, PatchActivation::cubic, true);
        auto be = backend_create(Device::cpu, 1);
        ParamStore ps;
        MoeLayer layer(cfg, ps, "moe", 0, 1, 4);
        ps.finalize(cfg.seed);
        layer.reserve(1);
        REQUIRE(ps.tensors()[size_t(layer.router_w)].size == 4);
        const float wr[4] = {1.0f, -1.0f, 0.5f, 2.0f};
        std::copy_n(wr, 4, ps.p(layer.router_w));
        const float x[4] = {1, 2, 3, -1};
        float y[2] = {};
        Pass info;
        info.training = false;
        info.capacity_factor = 0.0;
        layer.forward(*be, ps, y, x, 1, info);
        CHECK(layer.logits()[0] == doctest::Approx(4.5));
        CHECK(layer.logits()[1] == doctest::Approx(-2.0));
        CHECK(layer.plan().token_assignments(0) == 1);
    }

    TEST_CASE("patch expert: gradient check, cubic") {
        check_patch_layer(PatchActivation::cubic, false, "cubic");
    }

    TEST_CASE("patch expert: gradient check, linear") {
        check_patch_layer(PatchActivation::linear, false, "linear");
    }

    TEST_CASE("patch expert: gradient check, cubic with the tied router") {
        check_patch_layer(PatchActivation::cubic, true, "cubic tied");
    }

    TEST_CASE("patch expert: gradient check of the moe_only model end to end") {
        // loss = cross-entropy of the gated patch-expert scores; uniform gating noise on, so the
        // router's gradient goes through the noisy softmax gate of the chosen expert.
        for (PatchActivation act : {PatchActivation::cubic, PatchActivation::linear}) {
            const bool cubic = act == PatchActivation::cubic;
            CAPTURE(cubic);
            const int T = 8, P = 3, d = 4, N = 2, J = 2, Din = P * d;
            Config cfg = patch_config(P, d, N, J, act, true);
            cfg.router.noise_kind = NoiseKind::uniform;
            cfg.router.noise = 1.0;
            auto be = backend_create(Device::cpu, 1);
            Model model(cfg, Din, 2, T);
            REQUIRE(model.moe_layers().size() == 1);
            ParamStore& ps = model.params();
            MoeLayer& layer = *model.moe_layers()[0];
            fill_normal(ps.p(layer.router_w), ps.tensors()[size_t(layer.router_w)].size, 21, 1.0f);
            fill_normal(ps.p(layer.w1), ps.tensors()[size_t(layer.w1)].size, 22, 0.4f);
            fill_normal(ps.p(layer.b1), ps.tensors()[size_t(layer.b1)].size, 23, 0.4f);
            std::vector<float> x = normal_vector(size_t(T) * Din, 24, 0.7f);
            std::vector<int> labels(T);
            for (int t = 0; t < T; ++t) labels[size_t(t)] = (t * 5 + 1) % 2;
            Pass info;
            info.training = true;
            info.step = 4;
            info.capacity_factor = 0.0;
            std::fill(ps.grad().host().begin(), ps.grad().host().end(), 0.0f);
            const LossParts lp = model.forward(*be, x.data(), labels.data(), T, info);
            CHECK(lp.loss == doctest::Approx(lp.task));
            model.backward(*be, T);
            const std::vector<float> grad = ps.grad().host();
            auto f = [&] { return model.forward(*be, x.data(), labels.data(), T, info).loss; };
            auto sig = [&] { return plan_signature(layer); };
            for (size_t k = 0; k < ps.tensors().size(); ++k) {
                const ParamTensor& t = ps.tensors()[k];
                expect_gradient(
                    check_gradient(f, ps.p(int(k)), grad.data() + t.offset, t.size, {}, sig),
                    std::string(cubic ? "cubic " : "linear ") + t.name, 3e-3);
            }
        }
    }

    TEST_CASE("patch expert: the model has one layer of 2J filters per expert and no w2") {
        Config cfg = patch_config(4, 50, 8, 8, PatchActivation::cubic, true);
        Model model(cfg, 200, 2, 16);
        MoeLayer& layer = *model.moe_layers()[0];
        CHECK(model.moe_block_index() == std::vector<int>{0});
        CHECK(layer.w2 == -1);
        CHECK(model.params().tensors()[size_t(layer.w1)].size == size_t(8 * 50 * 16));
        CHECK(model.params().tensors()[size_t(layer.b1)].size == size_t(8 * 16));
        CHECK(model.params().tensors()[size_t(layer.router_w)].size == size_t(50 * 8));
        // the init: N(0, (0.001 / sqrt(3 * 50))^2): the sample std is within 5% of it
        const ParamTensor& t = model.params().tensors()[size_t(layer.w1)];
        double s2 = 0.0;
        for (size_t i = 0; i < t.size; ++i)
            s2 += double(model.params().p(layer.w1)[i]) * model.params().p(layer.w1)[i];
        const double sd = std::sqrt(s2 / double(t.size)), want = 0.001 / std::sqrt(150.0);
        CHECK(sd == doctest::Approx(want).epsilon(0.05));
    }
}  // TEST_SUITE
