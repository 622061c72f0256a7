// The router's score head (model/layers/router_head.h): the input jitter's draws and its
// evaluation pass, hand-computed logits, and finite-difference gradient checks of the head's
// parameters and input (the jitter fixed: the same noise key at every probe).
#include "model/layers/router_head.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/rng.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

// A head of L logits on inputs of D, its parameters seeded N(0, 1).
struct HeadOnBatch {
    int T, D, L;
    std::unique_ptr<Backend> be;
    ParamStore ps;
    RouterHead head;
    std::vector<float> x, w, logits, dx;

    HeadOnBatch(const RouterConfig& rc, int T_, int D_, int L_, int threads = 1)
        : T(T_), D(D_), L(L_), be(backend_create(Device::cpu, threads)) {
        head.declare(rc, ps, "moe", D, L, 77);
        ps.finalize(3);
        head.reserve(T);
        for (size_t k = 0; k < ps.tensors().size(); ++k)
            fill_normal(ps.p(int(k)), ps.tensors()[k].size, 40 + k, 1.0f);
        x = normal_vector(size_t(T) * D, 5);
        w = normal_vector(size_t(T) * L, 6);
        logits.assign(size_t(T) * L, 0.0f);
        dx.assign(size_t(T) * D, 0.0f);
    }
    void forward(bool training, uint64_t key) {
        head.forward(*be, ps, logits.data(), x.data(), T, training, key);
    }
    // every parameter tensor and dx against central differences of <w, logits>
    void check(const std::string& what, bool training, uint64_t key) {
        std::fill(ps.grad().begin(), ps.grad().end(), 0.0f);
        std::fill(dx.begin(), dx.end(), 0.0f);
        forward(training, key);
        head.backward(*be, ps, dx.data(), w.data(), x.data(), T);
        auto f = [&] {
            forward(training, key);
            return weighted_sum(w.data(), logits.data(), logits.size());
        };
        for (size_t k = 0; k < ps.tensors().size(); ++k)
            expect_gradient(check_gradient(f, ps.p(int(k)), ps.g(int(k)), ps.tensors()[k].size),
                            what + " " + ps.tensors()[k].name, 1e-3);
        expect_gradient(check_gradient(f, x.data(), dx.data(), x.size()), what + " dx", 1e-3);
    }
};

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("router head: linear logits are x Wr, and the jitter multiplies x in training only") {
        const int T = 3, D = 4, L = 2;
        RouterConfig rc;
        rc.jitter = 0.2;
        HeadOnBatch b(rc, T, D, L);
        const float* W = b.ps.p(b.head.input_tensor());
        // evaluation: no jitter, logits = x Wr (sums in double, compared to float rounding)
        b.forward(false, 9);
        for (int t = 0; t < T; ++t)
            for (int j = 0; j < L; ++j) {
                double s = 0.0;
                for (int d = 0; d < D; ++d) s += double(b.x[size_t(t * D + d)]) * W[d * L + j];
                CHECK(b.logits[size_t(t * L + j)] == doctest::Approx(s).epsilon(1e-5));
            }
        // training: logits = (x * u) Wr, u = 1 - eps + 2 eps U[0,1) keyed by (seed 77,
        // kStreamRouterJitter, noise key 9, t*D + d); every u within [0.8, 1.2) and not all 1
        const Rng rng{77, kStreamRouterJitter, 9};
        b.forward(true, 9);
        double spread = 0.0;
        for (int t = 0; t < T; ++t)
            for (int j = 0; j < L; ++j) {
                double s = 0.0;
                for (int d = 0; d < D; ++d) {
                    const double u = 0.8 + 0.4 * double(rng.uniform(uint64_t(t * D + d)));
                    CHECK(u >= 0.8);
                    CHECK(u < 1.2);
                    spread = std::max(spread, std::fabs(u - 1.0));
                    s += double(b.x[size_t(t * D + d)]) * u * W[d * L + j];
                }
                CHECK(b.logits[size_t(t * L + j)] == doctest::Approx(s).epsilon(1e-5));
            }
        CHECK(spread > 0.05);
        // another noise key (another step or layer) draws other factors
        const std::vector<float> at9 = b.logits;
        b.forward(true, 10);
        CHECK_FALSE(bit_equal(at9, b.logits));
        b.forward(true, 9);
        CHECK(bit_equal(at9, b.logits));
    }

    TEST_CASE("router head: the jittered logits do not depend on the thread count") {
        RouterConfig rc;
        rc.jitter = 0.1;
        HeadOnBatch one(rc, 64, 16, 8, 1), four(rc, 64, 16, 8, 4);
        one.forward(true, 3);
        four.forward(true, 3);
        CHECK(bit_equal(one.logits, four.logits));
    }

    TEST_CASE("router head: gradient check of the linear head, with and without jitter") {
        for (double jitter : {0.0, 0.3}) {
            RouterConfig rc;
            rc.jitter = jitter;
            HeadOnBatch b(rc, 5, 4, 3);
            const std::string what = "linear jitter=" + std::to_string(jitter);
            b.check(what + " training", true, 4);
            b.check(what + " evaluation", false, 4);
        }
    }

    TEST_CASE("router head: param_grad is the parameter gradient of backward") {
        RouterConfig rc;
        rc.jitter = 0.3;
        HeadOnBatch b(rc, 5, 4, 3);
        std::fill(b.ps.grad().begin(), b.ps.grad().end(), 0.0f);
        b.forward(true, 2);
        b.head.backward(*b.be, b.ps, b.dx.data(), b.w.data(), b.x.data(), b.T);
        std::vector<float> out(b.head.param_count());
        b.head.param_grad(*b.be, b.ps, out.data(), b.w.data(), b.x.data(), b.T);
        size_t at = 0;
        for (size_t k = 0; k < b.ps.tensors().size(); ++k)
            for (size_t i = 0; i < b.ps.tensors()[k].size; ++i)
                CHECK(out[at++] == doctest::Approx(b.ps.g(int(k))[i]).epsilon(1e-6));
        CHECK(at == out.size());
    }

    TEST_CASE("router head: cosine logits by hand, scale-free in x and e, temperature learned") {
        // D = 2, d = 2, L = 2; Wp = identity, e = {(1, 0), (1, 1)}, x = (3, 4):
        // h/|h| = (.6, .8); e/|e| = (1, 0), (1, 1)/sqrt 2; cos = .6 and 1.4/sqrt 2;
        // tau0 = 0.5 and log_tau_scale v = 0: logits = cos / 0.5; v = ln 2: tau = 1, logits = cos
        RouterConfig rc;
        rc.head = RouterHeadKind::cosine;
        rc.cosine.dim = 2;
        rc.cosine.temperature = 0.5;
        HeadOnBatch b(rc, 1, 2, 2);
        const float wp[4] = {1, 0, 0, 1}, e[4] = {1, 0, 1, 1};
        std::copy_n(wp, 4, b.ps.p(b.head.input_tensor()));
        std::copy_n(e, 4, b.ps.p(b.head.emb_tensor()));
        b.ps.p(b.head.tau_tensor())[0] = 0.0f;
        b.x = {3.0f, 4.0f};
        b.forward(false, 0);
        const double c1 = 1.4 / std::sqrt(2.0);
        CHECK(b.logits[0] == doctest::Approx(0.6 / 0.5));
        CHECK(b.logits[1] == doctest::Approx(c1 / 0.5));
        b.ps.p(b.head.tau_tensor())[0] = float(std::log(2.0));
        b.forward(false, 0);
        CHECK(b.logits[0] == doctest::Approx(0.6));
        CHECK(b.logits[1] == doctest::Approx(c1));
        // |logit| <= 1 / tau whatever the scale of x or e
        b.x = {300.0f, 400.0f};
        float* E = b.ps.p(b.head.emb_tensor());
        for (int j = 0; j < 4; ++j) E[j] *= 7.0f;
        b.forward(false, 0);
        CHECK(b.logits[0] == doctest::Approx(0.6));
        CHECK(b.logits[1] == doctest::Approx(c1));
        // a zero input: h = 0 is below the norm floor, the cosines are 0 and the gradient finite
        b.x = {0.0f, 0.0f};
        b.forward(true, 0);
        CHECK(b.logits[0] == 0.0f);
        CHECK(b.logits[1] == 0.0f);
        std::fill(b.dx.begin(), b.dx.end(), 0.0f);
        b.head.backward(*b.be, b.ps, b.dx.data(), b.w.data(), b.x.data(), 1);
        for (float v : b.ps.grad()) CHECK(std::isfinite(v));
        for (float v : b.dx) CHECK(std::isfinite(v));
    }

    TEST_CASE("router head: gradient check of the cosine head in x, Wp, e and tau") {
        for (double jitter : {0.0, 0.3}) {
            for (int dim : {2, 3, 8}) {
                RouterConfig rc;
                rc.head = RouterHeadKind::cosine;
                rc.cosine.dim = dim;
                rc.cosine.temperature = 0.3;
                rc.jitter = jitter;
                HeadOnBatch b(rc, 6, 5, 4);
                b.ps.p(b.head.tau_tensor())[0] = 0.2f;  // tau = 0.3 e^0.2, away from tau0
                const std::string what =
                    "cosine dim=" + std::to_string(dim) + " jitter=" + std::to_string(jitter);
                b.check(what, true, 4);
            }
        }
    }

    TEST_CASE("router head: the cosine head's param_grad is its parameter gradient") {
        RouterConfig rc;
        rc.head = RouterHeadKind::cosine;
        rc.cosine.dim = 3;
        rc.jitter = 0.2;
        HeadOnBatch b(rc, 5, 4, 3);
        std::fill(b.ps.grad().begin(), b.ps.grad().end(), 0.0f);
        b.forward(true, 2);
        std::vector<float> out(b.head.param_count(), 123.0f);  // overwritten
        b.head.param_grad(*b.be, b.ps, out.data(), b.w.data(), b.x.data(), b.T);
        b.head.backward(*b.be, b.ps, b.dx.data(), b.w.data(), b.x.data(), b.T);
        REQUIRE(b.ps.tensors().size() == 3);
        CHECK(out.size() == size_t(4 * 3 + 3 * 3 + 1));
        size_t at = 0;
        for (size_t k = 0; k < b.ps.tensors().size(); ++k)
            for (size_t i = 0; i < b.ps.tensors()[k].size; ++i)
                CHECK(out[at++] == doctest::Approx(b.ps.g(int(k))[i]).epsilon(1e-6));
        CHECK(b.ps.tensors()[0].name == "moe.router.proj");
        CHECK(b.ps.tensors()[1].name == "moe.router.experts");
        CHECK(b.ps.tensors()[2].name == "moe.router.log_tau_scale");
    }

    TEST_CASE("router head: router.init zero starts every weight at 0 and still learns") {
        const int T = 3, D = 4, L = 5;
        RouterConfig rc;
        rc.init = RouterInit::zero;
        ParamStore ps;
        RouterHead head;
        head.declare(rc, ps, "moe", D, L, 77);
        ps.finalize(3);
        head.reserve(T);
        REQUIRE(ps.tensors().size() == 1);
        CHECK(ps.tensors()[0].name == "moe.router.w");
        const float* W = ps.p(head.input_tensor());
        for (size_t j = 0; j < size_t(D) * L; ++j) CHECK(W[j] == 0.0f);
        auto be = backend_create(Device::cpu, 1);
        const std::vector<float> x = normal_vector(size_t(T) * D, 5);
        std::vector<float> logits(size_t(T) * L, 1.0f), dx(size_t(T) * D, 0.0f);
        head.forward(*be, ps, logits.data(), x.data(), T, true, 0);
        for (float v : logits) CHECK(v == 0.0f);  // uniform routing scores
        // dW = x^T G is not 0 at W = 0: G = 1 at (token 1, logit 2) gives dW[:, 2] = x[1, :]
        std::vector<float> G(size_t(T) * L, 0.0f);
        G[size_t(1) * L + 2] = 1.0f;
        head.backward(*be, ps, dx.data(), G.data(), x.data(), T);
        const float* dW = ps.g(head.input_tensor());
        for (int d = 0; d < D; ++d)
            for (int l = 0; l < L; ++l)
                CHECK(dW[size_t(d) * L + l] == (l == 2 ? x[size_t(1) * D + d] : 0.0f));
        for (float v : dx) CHECK(v == 0.0f);  // dx = G W^T = 0
        // the default (normal) draws nonzero weights from the same store seed
        ParamStore ps2;
        RouterHead normal;
        normal.declare(RouterConfig{}, ps2, "moe", D, L, 77);
        ps2.finalize(3);
        CHECK(std::any_of(ps2.data().begin(), ps2.data().end(), [](float v) { return v != 0.0f; }));
    }
}
