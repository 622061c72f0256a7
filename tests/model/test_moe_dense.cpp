// The MoE layer with the dense routers: soft (every expert on every token) and soft_slots (Soft
// MoE's slots through the layer's dense path). The forward output is checked against a direct
// computation from the parameters (softmaxes and expert FFNs written out in the test), and the
// whole layer is gradient-checked w.r.t. x, the router weights (Phi) and every expert tensor.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/moe_layer.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

struct DenseCase {
    RouterType type = RouterType::soft;
    int N = 3, S = 1, shared = 0;
    double scale = 1.0, z = 0.0;
    Activation act = Activation::relu;
};

Config dense_config(const DenseCase& c, int D, int H) {
    Config cfg;
    cfg.model.d_model = D;
    cfg.experts.count = c.N;
    cfg.experts.d_ff = H;
    cfg.experts.activation = c.act;
    cfg.experts.shared = c.shared;
    cfg.router.type = c.type;
    cfg.router.scale = c.scale;
    cfg.router.soft_slots.slots = c.S;
    cfg.capacity.factor = 0.0;
    cfg.balance.loss = BalanceLoss::none;
    cfg.balance.z_loss = c.z;
    cfg.seed = 5;
    return cfg;
}

// A layer with every parameter (router weights of std 1, biases too) drawn from seeds.
struct DenseLayer {
    static constexpr int T = 6, D = 4, H = 3;
    DenseCase c;
    std::unique_ptr<Backend> be = backend_create(Device::cpu, 1);
    ParamStore ps;
    MoeLayer layer;
    std::vector<float> x = normal_vector(size_t(T) * D, 31);
    std::vector<float> w = normal_vector(size_t(T) * D, 32);
    std::vector<float> y = std::vector<float>(size_t(T) * D);
    std::vector<float> dx = std::vector<float>(size_t(T) * D);
    Pass info;

    explicit DenseLayer(const DenseCase& c_)
        : c(c_), layer(dense_config(c_, D, H), ps, "moe", 0, 1) {
        ps.finalize(3);
        layer.reserve(T);
        for (size_t k = 0; k < ps.tensors().size(); ++k)
            fill_normal(ps.p(int(k)), ps.tensors()[k].size, 40 + k, 0.7f);
        info.training = true;
    }
    void forward() { layer.forward(*be, ps, y.data(), x.data(), T, info); }
    double loss() {
        forward();
        return weighted_sum(w.data(), y.data(), y.size()) + layer.weighted_z();
    }
};

// relu(x W1_e + b1_e) W2_e + b2_e for one row
std::vector<double> expert_row(const ParamStore& ps, const MoeLayer& l, int e, const double* in,
                               int D, int H) {
    const float* w1 = ps.p(l.w1) + size_t(e) * D * H;
    const float* b1 = ps.p(l.b1) + size_t(e) * H;
    const float* w2 = ps.p(l.w2) + size_t(e) * H * D;
    const float* b2 = ps.p(l.b2) + size_t(e) * D;
    std::vector<double> h(static_cast<size_t>(H)), out(static_cast<size_t>(D));
    for (int j = 0; j < H; ++j) {
        double v = b1[j];
        for (int d = 0; d < D; ++d) v += in[d] * w1[d * H + j];
        h[size_t(j)] = std::max(0.0, v);
    }
    for (int d = 0; d < D; ++d) {
        double v = b2[d];
        for (int j = 0; j < H; ++j) v += h[size_t(j)] * w2[j * D + d];
        out[size_t(d)] = v;
    }
    return out;
}

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("moe layer: soft is the dense mixture sum_i scale p_i E_i(x)") {
        DenseCase c;
        c.scale = 1.5;
        DenseLayer L(c);
        L.forward();
        const int T = L.T, D = L.D, H = L.H, N = c.N;
        const float* wr = L.ps.p(L.layer.router_w);
        for (int t = 0; t < T; ++t) {
            std::vector<double> z(static_cast<size_t>(N), 0.0), xin(static_cast<size_t>(D));
            for (int d = 0; d < D; ++d) xin[size_t(d)] = L.x[size_t(t * D + d)];
            for (int i = 0; i < N; ++i)
                for (int d = 0; d < D; ++d) z[size_t(i)] += xin[size_t(d)] * wr[d * N + i];
            double zs = 0.0;
            for (double v : z) zs += std::exp(v);
            std::vector<double> want(static_cast<size_t>(D), 0.0);
            for (int i = 0; i < N; ++i) {
                const std::vector<double> e = expert_row(L.ps, L.layer, i, xin.data(), D, H);
                for (int d = 0; d < D; ++d)
                    want[size_t(d)] += 1.5 * std::exp(z[size_t(i)]) / zs * e[size_t(d)];
            }
            for (int d = 0; d < D; ++d)
                CHECK(L.y[size_t(t * D + d)] == doctest::Approx(want[size_t(d)]).epsilon(1e-4));
        }
        CHECK(L.layer.plan().A == T * N);  // N experts per token, by definition
    }

    TEST_CASE("moe layer: soft_slots is y = C E(Dᵀ x) with softmaxes over tokens and slots") {
        DenseCase c;
        c.type = RouterType::soft_slots;
        c.S = 2;
        DenseLayer L(c);
        L.forward();
        const int T = L.T, D = L.D, H = L.H, N = c.N, S = c.S, NS = N * S;
        const float* phi = L.ps.p(L.layer.router_w);
        std::vector<double> z(size_t(T) * NS, 0.0);
        for (int t = 0; t < T; ++t)
            for (int j = 0; j < NS; ++j)
                for (int d = 0; d < D; ++d)
                    z[size_t(t * NS + j)] += double(L.x[size_t(t * D + d)]) * phi[d * NS + j];
        // dispatch: softmax down each column; combine: along each row
        std::vector<double> Dw(z.size()), Cw(z.size());
        for (int j = 0; j < NS; ++j) {
            double s = 0.0;
            for (int t = 0; t < T; ++t) s += std::exp(z[size_t(t * NS + j)]);
            for (int t = 0; t < T; ++t)
                Dw[size_t(t * NS + j)] = std::exp(z[size_t(t * NS + j)]) / s;
        }
        for (int t = 0; t < T; ++t) {
            double s = 0.0;
            for (int j = 0; j < NS; ++j) s += std::exp(z[size_t(t * NS + j)]);
            for (int j = 0; j < NS; ++j)
                Cw[size_t(t * NS + j)] = std::exp(z[size_t(t * NS + j)]) / s;
        }
        // slot j: its input a mix of all tokens, processed by expert j / S
        std::vector<std::vector<double>> ys;
        for (int j = 0; j < NS; ++j) {
            std::vector<double> xs(static_cast<size_t>(D), 0.0);
            for (int t = 0; t < T; ++t)
                for (int d = 0; d < D; ++d)
                    xs[size_t(d)] += Dw[size_t(t * NS + j)] * L.x[size_t(t * D + d)];
            ys.push_back(expert_row(L.ps, L.layer, j / S, xs.data(), D, H));
        }
        for (int t = 0; t < T; ++t)
            for (int d = 0; d < D; ++d) {
                double want = 0.0;
                for (int j = 0; j < NS; ++j)
                    want += Cw[size_t(t * NS + j)] * ys[size_t(j)][size_t(d)];
                CHECK(L.y[size_t(t * D + d)] == doctest::Approx(want).epsilon(1e-4));
            }
        // p[t,i]: the combine mass on expert i's slots; the plan's rows are the N*S slots
        const RouterState& st = L.layer.router_state();
        for (int t = 0; t < T; ++t)
            for (int i = 0; i < N; ++i)
                CHECK(st.probs[size_t(t * N + i)] ==
                      doctest::Approx(Cw[size_t(t * NS + i * S)] + Cw[size_t(t * NS + i * S + 1)]));
        CHECK(L.layer.plan().A == NS);
        CHECK(L.layer.logit_width() == NS);
        CHECK(L.layer.expert_logits() == nullptr);
    }

    TEST_CASE("moe layer: dense routers, gradient check of x, router weights and expert weights") {
        std::vector<DenseCase> cases;
        {
            DenseCase c;
            c.act = Activation::gelu;  // relu's kink is not in the plan's signature
            cases.push_back(c);
            c.scale = 2.0;
            c.shared = 1;
            c.z = 0.1;
            c.act = Activation::gelu;
            cases.push_back(c);
        }
        for (int S : {1, 2, 3}) {
            DenseCase c;
            c.type = RouterType::soft_slots;
            c.S = S;
            c.act = S == 2 ? Activation::swiglu : Activation::gelu;
            c.shared = S == 3 ? 1 : 0;
            c.z = S == 3 ? 0.1 : 0.0;
            cases.push_back(c);
        }
        for (const DenseCase& c : cases) {
            const std::string what =
                std::string(c.type == RouterType::soft ? "soft" : "soft_slots") +
                " S=" + std::to_string(c.S) + " shared=" + std::to_string(c.shared) +
                " z=" + std::to_string(c.z);
            CAPTURE(what);
            DenseLayer L(c);
            std::fill(L.ps.grad().host().begin(), L.ps.grad().host().end(), 0.0f);
            L.forward();
            L.layer.backward(*L.be, L.ps, L.dx.data(), L.w.data(), L.x.data(), L.T);
            auto f = [&] { return L.loss(); };
            auto sig = [] { return Signature{}; };  // nothing piecewise but the activation
            for (size_t k = 0; k < L.ps.tensors().size(); ++k) {
                const ParamTensor& t = L.ps.tensors()[k];
                expect_gradient(check_gradient(f, L.ps.p(int(k)), L.ps.g(int(k)), t.size, {}, sig),
                                what + " " + t.name, 2e-3);
            }
            expect_gradient(check_gradient(f, L.x.data(), L.dx.data(), L.x.size(), {}, sig),
                            what + " dx", 2e-3);
        }
    }

    TEST_CASE(
        "moe layer: dense router gradients are the same whether or not split for statistics") {
        DenseCase c;
        c.type = RouterType::soft_slots;
        c.S = 2;
        c.z = 0.1;
        DenseLayer a(c), b(c);
        for (DenseLayer* L : {&a, &b}) {
            std::fill(L->ps.grad().host().begin(), L->ps.grad().host().end(), 0.0f);
            L->forward();
        }
        a.layer.backward(*a.be, a.ps, a.dx.data(), a.w.data(), a.x.data(), a.T, false);
        b.layer.backward(*b.be, b.ps, b.dx.data(), b.w.data(), b.x.data(), b.T, true);
        CHECK(bit_equal(a.ps.grad().host(), b.ps.grad().host()));
        CHECK(bit_equal(a.dx, b.dx));
        // the task part is not zero, the auxiliary part is the z-loss's
        double task = 0.0, aux = 0.0;
        for (float v : b.layer.router_grad_task()) task += double(v) * v;
        for (float v : b.layer.router_grad_aux()) aux += double(v) * v;
        CHECK(task > 0.0);
        CHECK(aux > 0.0);
    }
}
