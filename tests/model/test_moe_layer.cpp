// MoE layer end to end: loss = sum(w * y) + the layer's returned balancing loss, gradient-checked
// against MoeLayer::backward for dx and every parameter tensor (router weights, expert weights and
// biases, shared experts) over k, capacity drops, shared experts, score functions,
// normalisation, and each auxiliary loss alone.
//
// Top-k selection and capacity are piecewise constant in the parameters: inputs are seeded with
// router weights large enough that the logits are well separated, and a probe whose plan (sel,
// kept; for shazeer also the K-th and (K+1)-th noisy logit of each token) differs at +h or -h
// from the plan at p is skipped (expect_gradient bounds how many).
#include "model/moe_layer.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "config/config_load.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

struct MoeCase {
    int K = 2;
    int N = 4;
    double factor = 0.0;
    DropPolicy policy = DropPolicy::position;
    int shared = 0;
    SharedGate shared_gate = SharedGate::none;
    ScoreFn score = ScoreFn::softmax;
    bool normalize = true;
    BalanceLoss loss = BalanceLoss::none;
    double alpha = 0.0;
    BalanceLossesConfig losses;
    double z = 0.0;
    double noise = 0.0;
    double bias_rate = 0.0;
    Activation act = Activation::gelu;
    uint64_t seed = 21;
    RouterType type = RouterType::topk;
    double scale = 1.0;
    SecondExpert second = SecondExpert::always;
    int groups = 1, topk_groups = 1;
    double jitter = 0.0;
    TopkNoise topk_noise = TopkNoise::fixed;
    RouterHeadKind head = RouterHeadKind::linear;
    int cosine_dim = 3;
    double temperature = 0.5;
};

Config moe_config(const MoeCase& c, int D, int H) {
    Config cfg;
    cfg.model.d_model = D;
    cfg.experts.count = c.N;
    cfg.experts.d_ff = H;
    cfg.experts.activation = c.act;
    cfg.experts.shared = c.shared;
    cfg.experts.shared_gate = c.shared_gate;
    cfg.router.k = c.K;
    cfg.router.score = c.score;
    cfg.router.normalize = c.normalize ? Normalize::yes : Normalize::no;
    cfg.router.noise = c.noise;
    cfg.router.type = c.type;
    cfg.router.scale = c.scale;
    cfg.router.topk.second_expert = c.second;
    cfg.router.topk.groups = c.groups;
    cfg.router.topk.topk_groups = c.topk_groups;
    cfg.router.jitter = c.jitter;
    cfg.router.topk.noise = c.topk_noise;
    cfg.router.head = c.head;
    cfg.router.cosine.dim = c.cosine_dim;
    cfg.router.cosine.temperature = c.temperature;
    cfg.capacity.factor = c.factor;
    cfg.capacity.drop_policy = c.policy;
    cfg.balance.loss = c.loss;
    cfg.balance.alpha = c.alpha;
    cfg.balance.losses = c.losses;
    cfg.balance.z_loss = c.z;
    cfg.balance.bias_rate = c.bias_rate;
    cfg.seed = c.seed;
    return cfg;
}

// The routing decisions of the last forward: what must not change within a probe.
// The selection (the router's slots) and which assignments the capacity kept (the plan's slots).
Signature plan_signature(const MoeLayer& layer, bool shazeer) {
    const RouterState& st = layer.router_state();
    const RoutingPlan& plan = layer.plan();
    Signature s(st.sel.begin(), st.sel.begin() + ptrdiff_t(size_t(st.T) * st.K));
    s.insert(s.end(), plan.slot.begin(), plan.slot.begin() + plan.A);
    s.insert(s.end(), plan.token.begin(), plan.token.begin() + plan.A);  // expert choice
    if (shazeer) {
        // the Load term's thresholds: the order of the top K+1 noisy logits of each token
        for (int t = 0; t < st.T; ++t) {
            std::vector<int> o(size_t(st.N));
            std::iota(o.begin(), o.end(), 0);
            const float* z = st.noisy.data() + size_t(t) * st.N;
            std::stable_sort(o.begin(), o.end(), [z](int a, int b) { return z[a] > z[b]; });
            s.insert(s.end(), o.begin(), o.begin() + std::min(st.N, st.K + 1));
        }
    }
    return s;
}

// Sets a layer's balancing bias through its state stream (the bias is the layer's own state).
void set_bias(MoeLayer& layer, const std::vector<float>& bias) {
    std::stringstream ss;
    BinaryWriter w(ss);
    w.tag("MOEL");
    w.vec(bias);
    BinaryReader r(ss);
    layer.load(r);
}

double layer_loss(const MoeLayer& layer) {
    return layer.weighted_aux() + layer.weighted_z();
}

struct MoeRun {
    int drops = 0;      // dropped assignments in the plan at p
    int A = 0;          // processed assignments at p
    int uncovered = 0;  // tokens with no processed assignment at p
    double aux = 0.0, z = 0.0, layer_loss = 0.0;
};

MoeRun check_moe(const MoeCase& c, const std::string& what, double tol = 2e-3) {
    CAPTURE(what);
    const int T = 8, D = 4, H = 3;
    auto be = backend_create(Device::cpu, 1);
    const Config cfg = moe_config(c, D, H);
    ParamStore ps;
    MoeLayer layer(cfg, ps, "moe", 0, 1);
    ps.finalize(c.seed);
    layer.reserve(T);
    // router weights of std 1 (not the small init) so that logits are well separated
    fill_normal(ps.p(layer.router_w), ps.tensors()[size_t(layer.router_w)].size, c.seed + 1, 1.0f);
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        if (t.init == Init::zeros) fill_normal(ps.p(int(k)), t.size, c.seed + 10 + k, 0.3f);
    }
    if (c.bias_rate > 0.0) {
        // a bias that changes the selection of some tokens (it never enters the gates)
        std::vector<float> bias(size_t(c.N));
        for (int i = 0; i < c.N; ++i) bias[size_t(i)] = 0.15f * float((i % 3) - 1);
        set_bias(layer, bias);
    }
    std::vector<float> x = normal_vector(size_t(T) * D, c.seed + 2);
    const std::vector<float> w = normal_vector(size_t(T) * D, c.seed + 3);
    std::vector<float> y(size_t(T) * D), dx(size_t(T) * D);
    Pass info;
    info.training = true;
    info.step = 17;
    info.capacity_factor = c.factor;

    std::fill(ps.grad().host().begin(), ps.grad().host().end(), 0.0f);
    MoeRun run;
    layer.forward(*be, ps, y.data(), x.data(), T, info);
    run.layer_loss = layer_loss(layer);
    run.aux = layer.aux_loss();
    run.z = layer.z_loss_value();
    for (int i = 0; i < c.N; ++i) run.drops += layer.plan().dropped[i];
    run.A = layer.plan().A;
    for (int t = 0; t < T; ++t) run.uncovered += layer.plan().token_assignments(t) == 0;
    layer.backward(*be, ps, dx.data(), w.data(), x.data(), T);

    auto f = [&] {
        layer.forward(*be, ps, y.data(), x.data(), T, info);
        return weighted_sum(w.data(), y.data(), y.size()) + layer_loss(layer);
    };
    const bool shazeer = c.loss == BalanceLoss::shazeer || c.losses.shazeer > 0.0;
    auto sig = [&] { return plan_signature(layer, shazeer); };
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        expect_gradient(check_gradient(f, ps.p(int(k)), ps.g(int(k)), t.size, {}, sig),
                        what + " " + t.name, tol);
    }
    expect_gradient(check_gradient(f, x.data(), dx.data(), x.size(), {}, sig), what + " dx", tol);
    return run;
}

// A layer of case c on T tokens with fixed inputs x and output weights w (the loss is <w, y>),
// its parameters initialised from seed 3 as in training.
struct LayerOnBatch {
    static constexpr int T = 8, D = 4, H = 3;
    std::unique_ptr<Backend> be = backend_create(Device::cpu, 1);
    ParamStore ps;
    MoeLayer layer;
    std::vector<float> x = normal_vector(size_t(T) * D, 4);
    std::vector<float> w = normal_vector(size_t(T) * D, 5);
    std::vector<float> y = std::vector<float>(size_t(T) * D);
    std::vector<float> dx = std::vector<float>(size_t(T) * D);
    Pass info;

    explicit LayerOnBatch(const MoeCase& c) : layer(moe_config(c, D, H), ps, "moe", 0, 1) {
        ps.finalize(3);
        layer.reserve(T);
        info.training = true;
    }
    void forward() { layer.forward(*be, ps, y.data(), x.data(), T, info); }
    // zeroed gradients, forward, backward
    void step(bool router_grad_parts) {
        std::fill(ps.grad().host().begin(), ps.grad().host().end(), 0.0f);
        forward();
        layer.backward(*be, ps, dx.data(), w.data(), x.data(), T, router_grad_parts);
    }
};

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("moe layer: gradient check over k, dropless") {
        for (int K : {1, 2, 4}) {
            MoeCase c;
            c.K = K;
            c.N = K == 4 ? 6 : 4;
            check_moe(c, "k=" + std::to_string(K));
        }
    }

    TEST_CASE("moe layer: gradient check with capacity drops") {
        for (int K : {1, 2, 4}) {
            for (DropPolicy policy : {DropPolicy::position, DropPolicy::score, DropPolicy::random,
                                      DropPolicy::priority}) {
                MoeCase c;
                c.K = K;
                c.N = K == 4 ? 6 : 4;
                c.factor = 0.5;
                c.policy = policy;
                const std::string name(to_string(policy));
                const MoeRun run = check_moe(c, "k=" + std::to_string(K) + " factor=0.5 " + name);
                CHECK(run.drops > 0);  // the case does drop assignments
            }
        }
    }

    TEST_CASE("moe layer: gradient check with a shared expert") {
        for (double factor : {0.0, 0.5}) {
            MoeCase c;
            c.shared = 1;
            c.factor = factor;
            check_moe(c, "shared=1 factor=" + std::to_string(factor));
        }
        MoeCase c;
        c.shared = 2;
        c.act = Activation::swiglu;
        check_moe(c, "shared=2 swiglu");
    }

    TEST_CASE("moe layer: gradient check for each expert activation (dpre is computed over pre)") {
        // backward writes dh over h, dpre over pre in place and dXd over Xd: every activation's
        // act_backward must read pre before it writes dpre at the same place (swiglu: 2H wide)
        for (Activation act : {Activation::gelu, Activation::relu, Activation::swiglu}) {
            for (double factor : {0.0, 0.5}) {
                MoeCase c;
                c.act = act;
                c.factor = factor;
                const std::string name = act == Activation::gelu   ? "gelu"
                                         : act == Activation::relu ? "relu"
                                                                   : "swiglu";
                check_moe(c, name + " factor=" + std::to_string(factor));
            }
        }
    }

    TEST_CASE("moe layer: backward over the reused forward workspaces is repeatable") {
        // forward + backward twice, the second time after a step with a different T (stale rows in
        // the workspaces): the gradients must be bit-identical to those of a fresh layer
        const int T = 8, D = 4, H = 3;
        for (Activation act : {Activation::gelu, Activation::relu, Activation::swiglu}) {
            CAPTURE(int(act));
            MoeCase c;
            c.act = act;
            c.factor = 0.75;
            c.shared = 1;
            c.loss = BalanceLoss::switch_loss;
            c.alpha = 0.1;
            auto be = backend_create(Device::cpu, 1);
            const Config cfg = moe_config(c, D, H);
            auto run = [&](ParamStore& ps, MoeLayer& layer, int t, uint64_t seed) {
                std::vector<float> x = normal_vector(size_t(t) * D, seed);
                const std::vector<float> w = normal_vector(size_t(t) * D, seed + 1);
                std::vector<float> y(size_t(t) * D), dx(size_t(t) * D);
                Pass info;
                info.training = true;
                info.capacity_factor = c.factor;
                std::fill(ps.grad().host().begin(), ps.grad().host().end(), 0.0f);
                layer.forward(*be, ps, y.data(), x.data(), t, info);
                layer.backward(*be, ps, dx.data(), w.data(), x.data(), t);
                std::vector<float> out(ps.grad().host().begin(), ps.grad().host().end());
                out.insert(out.end(), dx.begin(), dx.end());
                return out;
            };
            ParamStore ps_fresh, ps_used;
            MoeLayer fresh(cfg, ps_fresh, "moe", 0, 1), used(cfg, ps_used, "moe", 0, 1);
            ps_fresh.finalize(5);
            ps_used.finalize(5);
            fresh.reserve(T);
            used.reserve(T);
            run(ps_used, used, T, 40);      // fills every workspace with gradients
            run(ps_used, used, T / 2, 50);  // fewer rows: stale gradients past them
            const std::vector<float> a = run(ps_fresh, fresh, T, 60);
            const std::vector<float> b = run(ps_used, used, T, 60);
            REQUIRE(a.size() == b.size());
            CHECK(std::equal(a.begin(), a.end(), b.begin()));
        }
    }

    TEST_CASE("moe layer: gradient check, sigmoid and softmax scores, normalize on and off") {
        for (ScoreFn score : {ScoreFn::softmax, ScoreFn::sigmoid}) {
            for (bool normalize : {true, false}) {
                for (int K : {1, 2}) {
                    MoeCase c;
                    c.K = K;
                    c.score = score;
                    c.normalize = normalize;
                    c.factor = 0.75;
                    check_moe(c, std::string(score == ScoreFn::sigmoid ? "sigmoid" : "softmax") +
                                     (normalize ? " normalize" : " raw") +
                                     " k=" + std::to_string(K));
                }
            }
        }
    }

    TEST_CASE("moe layer: gradient check, balancing bias changes selection only") {
        MoeCase c;
        c.bias_rate = 0.01;
        c.score = ScoreFn::sigmoid;
        c.factor = 0.75;
        check_moe(c, "sigmoid + bias");
    }

    TEST_CASE("moe layer: gradient check of each auxiliary loss alone") {
        SUBCASE("switch") {
            for (int K : {1, 2}) {
                MoeCase c;
                c.K = K;
                c.loss = BalanceLoss::switch_loss;
                c.alpha = 0.5;  // large enough to dominate the router gradient
                const MoeRun run = check_moe(c, "switch k=" + std::to_string(K));
                CHECK(run.layer_loss == doctest::Approx(0.5 * run.aux));
            }
        }
        SUBCASE("shazeer (noisy gating, smooth load)") {
            for (int K : {1, 2}) {
                MoeCase c;
                c.K = K;
                c.loss = BalanceLoss::shazeer;
                c.alpha = 0.5;
                c.noise = 1.0;
                const MoeRun run = check_moe(c, "shazeer k=" + std::to_string(K));
                CHECK(run.layer_loss == doctest::Approx(0.5 * run.aux));
            }
        }
        SUBCASE("shazeer with capacity drops") {
            MoeCase c;
            c.loss = BalanceLoss::shazeer;
            c.alpha = 0.5;
            c.noise = 1.0;
            c.factor = 0.5;
            check_moe(c, "shazeer factor=0.5");
        }
        SUBCASE("z-loss") {
            MoeCase c;
            c.loss = BalanceLoss::none;
            c.alpha = 0.5;  // ignored with loss none
            c.z = 0.1;
            const MoeRun run = check_moe(c, "z-loss");
            CHECK(run.layer_loss == doctest::Approx(0.1 * run.z));
        }
        SUBCASE("gshard (first choices)") {
            for (int K : {1, 2}) {
                MoeCase c;
                c.K = K;
                c.loss = BalanceLoss::gshard;
                c.alpha = 0.5;
                c.factor = 0.75;
                const MoeRun run = check_moe(c, "gshard k=" + std::to_string(K));
                CHECK(run.layer_loss == doctest::Approx(0.5 * run.aux));
            }
        }
        SUBCASE("several losses at once (balance.losses)") {
            MoeCase c;
            c.loss = BalanceLoss::switch_loss;
            c.alpha = 0.3;
            c.losses.gshard = 0.4;
            c.losses.shazeer = 0.2;
            c.noise = 1.0;
            const MoeRun all = check_moe(c, "switch + losses gshard, shazeer");
            // the layer's loss is the sum of each loss alone; aux_loss is balance.loss's
            MoeCase sw = c, gs = c, sh = c;
            sw.losses = {};
            gs.loss = sh.loss = BalanceLoss::none;
            gs.losses.shazeer = 0.0;
            sh.losses.gshard = 0.0;
            const MoeRun a = check_moe(sw, "switch alone"), b = check_moe(gs, "gshard alone"),
                         d = check_moe(sh, "shazeer alone");
            CHECK(all.aux == a.aux);
            CHECK(b.aux == 0.0);
            CHECK(b.layer_loss > 0.0);
            CHECK(d.layer_loss > 0.0);
            CHECK(all.layer_loss == doctest::Approx(a.layer_loss + b.layer_loss + d.layer_loss));
        }
        SUBCASE("all together") {
            MoeCase c;
            c.loss = BalanceLoss::switch_loss;
            c.alpha = 0.3;
            c.z = 0.05;
            c.factor = 0.75;
            c.shared = 1;
            check_moe(c, "switch + z + capacity + shared");
        }
    }

    TEST_CASE(
        "moe layer: router gradient is the sum of the task and auxiliary parts, which never change "
        "training") {
        MoeCase c;
        c.loss = BalanceLoss::switch_loss;
        c.alpha = 0.2;
        c.z = 0.05;
        LayerOnBatch b(c);
        // without the parts (a step between log rows), then with them (a log row)
        b.step(false);
        const std::vector<float> grad_plain = b.ps.grad().host(), dx_plain = b.dx;
        b.step(true);
        CHECK(b.ps.grad().host() == grad_plain);
        CHECK(b.dx == dx_plain);
        const float* g = b.ps.g(b.layer.router_w);
        const std::span<const float> task = b.layer.router_grad_task();
        const std::span<const float> aux = b.layer.router_grad_aux();
        double task2 = 0.0, aux2 = 0.0;
        for (int i = 0; i < LayerOnBatch::D * c.N; ++i) {
            CHECK(g[i] == doctest::Approx(task[size_t(i)] + aux[size_t(i)]));
            task2 += double(task[size_t(i)]) * task[size_t(i)];
            aux2 += double(aux[size_t(i)]) * aux[size_t(i)];
        }
        CHECK(task2 > 1e-8);  // both parts are there
        CHECK(aux2 > 1e-8);
    }

    TEST_CASE("moe layer: with k = 1 and normalize the router gets no task gradient") {
        // g = p_i / p_i = 1 for every token: the routing is trained by the auxiliary losses alone
        // (Switch uses the raw probability, normalize: false). Documented here so that a preset
        // that pairs k = 1 with normalize does so knowingly.
        for (bool normalize : {true, false}) {
            CAPTURE(normalize);
            MoeCase c;
            c.K = 1;
            c.normalize = normalize;
            LayerOnBatch b(c);
            b.step(true);
            const RouterState& st = b.layer.router_state();
            for (int t = 0; t < LayerOnBatch::T; ++t) {
                const float p = st.probs[size_t(t * c.N + st.sel[size_t(t)])];
                CHECK(st.sel_gate[size_t(t)] == (normalize ? 1.0f : p));
            }
            double g2 = 0.0;
            for (float v : b.layer.router_grad_task()) g2 += double(v) * v;
            if (normalize)
                CHECK(g2 < 1e-10);
            else
                CHECK(g2 > 1e-6);
        }
    }

    TEST_CASE("moe layer: expert choice, gradient check and per-token cost") {
        // T = 8, N = 4: C = ceil(factor * 8 * k / 4); every expert processes exactly C, the layer's
        // capacity pass drops nothing, and A = N * C (not T * N)
        for (int K : {1, 2}) {
            for (double factor : {1.0, 0.5}) {
                MoeCase c;
                c.type = RouterType::expert_choice;
                c.K = K;
                c.factor = factor;
                const std::string what =
                    "expert_choice k=" + std::to_string(K) + " factor=" + std::to_string(factor);
                const MoeRun run = check_moe(c, what);
                const int C = int(std::ceil(factor * 8 * K / 4 - 1e-9));
                CHECK(run.drops == 0);
                CHECK(run.A == 4 * C);
                if (K * factor < 1.0) CHECK(run.uncovered > 0);  // fewer slots than tokens
            }
        }
        MoeCase c;
        c.type = RouterType::expert_choice;
        c.factor = 1.0;
        c.scale = 2.0;
        c.shared = 1;
        c.loss = BalanceLoss::switch_loss;
        c.alpha = 0.5;
        c.z = 0.1;
        const MoeRun run = check_moe(c, "expert_choice scale=2 shared switch z");
        // the Switch loss is the constant N * C / (T k) = 4 * 4 / 16 = 1 (f_i = C / (T k) each)
        CHECK(run.aux == doctest::Approx(1.0));
        CHECK(run.layer_loss == doctest::Approx(0.5 * run.aux + 0.1 * run.z));
    }

    TEST_CASE("moe layer: gradient check of the top-k options (scale, random 2nd expert, groups)") {
        for (double factor : {0.0, 0.75}) {
            MoeCase c;
            c.factor = factor;
            c.scale = 2.5;
            check_moe(c, "scale=2.5 factor=" + std::to_string(factor));
            c.scale = 1.0;
            c.second = SecondExpert::random;
            check_moe(c, "second=random factor=" + std::to_string(factor));
            MoeCase g;
            g.factor = factor;
            g.N = 8;
            g.K = 2;
            g.groups = 4;
            g.topk_groups = 2;
            g.score = ScoreFn::sigmoid;
            g.bias_rate = 0.01;
            check_moe(g, "groups=4/2 sigmoid bias factor=" + std::to_string(factor));
        }
    }

    TEST_CASE("moe layer: the bias moves by its rule at the rate of the forward's step") {
        // bias_rate .01 with a warmup of 4 steps: the forward of step 2 moves the bias by .005
        // times sign(mean A - A); a later forward of step 9 (past the warmup) by .01.
        MoeCase c;
        c.bias_rate = 0.01;
        Config cfg = moe_config(c, LayerOnBatch::D, LayerOnBatch::H);
        cfg.balance.bias_warmup = 4;
        cfg.train.steps = 10;
        const int T = LayerOnBatch::T, D = LayerOnBatch::D;
        auto be = backend_create(Device::cpu, 1);
        ParamStore ps;
        MoeLayer layer(cfg, ps, "moe", 0, 1);
        ps.finalize(3);
        layer.reserve(T);
        fill_normal(ps.p(layer.router_w), size_t(D) * c.N, 8, 1.0f);  // an uneven routing
        const std::vector<float> x = normal_vector(size_t(T) * D, 4);
        std::vector<float> y(size_t(T) * D);
        Pass pass;
        pass.training = true;
        for (int64_t step : {2, 9}) {
            CAPTURE(step);
            pass.step = step;
            const std::vector<float> before(layer.bias(), layer.bias() + c.N);
            layer.forward(*be, ps, y.data(), x.data(), T, pass);
            const std::vector<int> routed(layer.plan().routed.begin(),
                                          layer.plan().routed.begin() + c.N);
            layer.after_optimizer_step();
            const float rate = step == 2 ? 0.005f : 0.01f;
            double mean = 0.0;
            for (int a : routed) mean += a;
            mean /= c.N;
            int moved = 0;
            for (int i = 0; i < c.N; ++i) {
                const double e = mean - routed[size_t(i)];
                const float sign = float((e > 0) - (e < 0));
                CHECK(layer.bias()[i] == before[size_t(i)] + rate * sign);
                moved += sign != 0.0f;
            }
            CHECK(moved > 0);  // the routing is uneven: the test sees a move
        }
    }

    TEST_CASE("moe layer: gated shared experts multiply their output by sigmoid(x . w_g)") {
        // The same parameters with and without the gate (w_g is the last tensor declared, zeros):
        // with w_g = 0 the gate is 1/2, so y_none - y_gated = S / 2, the shared output; with w_g
        // = v, y = y_none - S + sigmoid(x[t] . v) S[t].
        MoeCase c;
        c.shared = 1;
        LayerOnBatch plain(c);
        c.shared_gate = SharedGate::sigmoid;
        LayerOnBatch gated(c);
        REQUIRE(gated.layer.shared_gate >= 0);
        plain.forward();
        gated.forward();
        const int T = LayerOnBatch::T, D = LayerOnBatch::D;
        std::vector<float> S(size_t(T) * D);
        for (size_t i = 0; i < S.size(); ++i) S[i] = 2.0f * (plain.y[i] - gated.y[i]);
        double s2 = 0.0;
        for (float v : S) s2 += double(v) * v;
        REQUIRE(s2 > 1e-4);  // the shared expert contributes
        const float v[D] = {0.5f, -1.0f, 0.25f, 2.0f};
        std::copy_n(v, D, gated.ps.p(gated.layer.shared_gate));
        gated.forward();
        for (int t = 0; t < T; ++t) {
            double a = 0.0;
            for (int d = 0; d < D; ++d) a += double(gated.x[size_t(t * D + d)]) * v[d];
            const double g = 1.0 / (1.0 + std::exp(-a));
            for (int d = 0; d < D; ++d) {
                const size_t i = size_t(t * D + d);
                CHECK(gated.y[i] == doctest::Approx(plain.y[i] - S[i] + g * S[i]).epsilon(1e-5));
            }
        }
        // gradient checks (w_g random, from check_moe's fill of zero-initialised tensors)
        for (double factor : {0.0, 0.75}) {
            MoeCase g;
            g.shared = 1;
            g.shared_gate = SharedGate::sigmoid;
            g.factor = factor;
            check_moe(g, "gated shared factor=" + std::to_string(factor));
        }
        MoeCase w;
        w.shared = 2;
        w.shared_gate = SharedGate::sigmoid;
        w.act = Activation::swiglu;
        w.loss = BalanceLoss::switch_loss;
        w.alpha = 0.2;
        check_moe(w, "gated shared=2 swiglu switch");
    }

    TEST_CASE("moe layer: gradient check with router input jitter") {
        // the jitter is keyed by the pass (step 17, this layer): the same factors at every probe
        for (double factor : {0.0, 0.75}) {
            MoeCase c;
            c.factor = factor;
            c.jitter = 0.3;
            check_moe(c, "jitter=0.3 factor=" + std::to_string(factor));
        }
        MoeCase c;
        c.jitter = 0.2;
        c.loss = BalanceLoss::switch_loss;
        c.alpha = 0.5;
        c.z = 0.1;
        c.shared = 1;
        check_moe(c, "jitter=0.2 switch z shared");
    }

    TEST_CASE("moe layer: the jitter reaches the router only, and only in training") {
        // k = 1 with normalize: every gate is 1, so y is the chosen expert's output of x. A small
        // jitter that changes no selection must leave y bit-identical (the experts see x, not
        // the jittered x) while it changes the logits; evaluation has no jitter at all.
        MoeCase plain;
        plain.K = 1;
        MoeCase jit = plain;
        jit.jitter = 0.01;
        LayerOnBatch a(plain), b(jit);
        a.forward();
        b.forward();
        const RouterState &sa = a.layer.router_state(), &sb = b.layer.router_state();
        REQUIRE(std::equal(sa.sel.begin(), sa.sel.begin() + LayerOnBatch::T, sb.sel.begin()));
        CHECK(a.y == b.y);
        const size_t TN = size_t(LayerOnBatch::T) * plain.N;
        CHECK_FALSE(std::equal(a.layer.logits(), a.layer.logits() + TN, b.layer.logits()));
        a.info.training = false;
        b.info.training = false;
        a.forward();
        b.forward();
        CHECK(std::equal(a.layer.logits(), a.layer.logits() + TN, b.layer.logits()));
    }
    TEST_CASE("moe layer: gradient check with learned gating noise, alone and with shazeer") {
        // the router weights are (D, 2N): clean logits, then noise logits; the noise draws are
        // keyed by the pass (step 17, this layer), the same at every probe
        for (int K : {1, 2}) {
            MoeCase c;
            c.K = K;
            c.topk_noise = TopkNoise::learned;
            check_moe(c, "learned noise k=" + std::to_string(K));
            c.loss = BalanceLoss::shazeer;
            c.alpha = 0.5;
            const MoeRun run = check_moe(c, "learned noise shazeer k=" + std::to_string(K));
            CHECK(run.layer_loss == doctest::Approx(0.5 * run.aux));
        }
        MoeCase c;
        c.topk_noise = TopkNoise::learned;
        c.loss = BalanceLoss::shazeer;
        c.alpha = 0.5;
        c.factor = 0.5;
        c.jitter = 0.1;
        check_moe(c, "learned noise shazeer factor=0.5 jitter");
    }
    TEST_CASE("moe layer: gradient check with the cosine router head") {
        // Wp, the expert embeddings and the temperature are the head's parameters; top-k and
        // expert choice read the same logits
        for (int K : {1, 2}) {
            for (double factor : {0.0, 0.75}) {
                MoeCase c;
                c.head = RouterHeadKind::cosine;
                c.K = K;
                c.normalize = K > 1;
                c.factor = factor;
                check_moe(c, "cosine k=" + std::to_string(K) + " factor=" + std::to_string(factor));
            }
        }
        MoeCase c;
        c.head = RouterHeadKind::cosine;
        c.cosine_dim = 8;
        c.temperature = 0.07;  // the default: sharp, logits up to 1/0.07
        c.loss = BalanceLoss::switch_loss;
        c.alpha = 0.5;
        c.z = 0.01;
        c.jitter = 0.1;
        c.shared = 1;
        check_moe(c, "cosine dim=8 tau=0.07 switch z jitter shared");
        MoeCase s;
        s.head = RouterHeadKind::cosine;
        s.loss = BalanceLoss::shazeer;
        s.alpha = 0.5;
        s.noise = 1.0;
        check_moe(s, "cosine shazeer noise=1");
        MoeCase e;
        e.head = RouterHeadKind::cosine;
        e.type = RouterType::expert_choice;
        e.factor = 1.0;
        e.loss = BalanceLoss::switch_loss;
        e.alpha = 0.5;
        check_moe(e, "cosine expert_choice");
        e.head = RouterHeadKind::linear;
        e.jitter = 0.2;
        check_moe(e, "linear expert_choice jitter");
    }

    TEST_CASE(
        "moe layer: the cosine head's gradient stats are its parameters' task and aux parts") {
        MoeCase c;
        c.head = RouterHeadKind::cosine;
        c.loss = BalanceLoss::switch_loss;
        c.alpha = 0.2;
        c.z = 0.05;
        LayerOnBatch b(c);
        b.step(false);
        const std::vector<float> grad_plain = b.ps.grad().host(), dx_plain = b.dx;
        b.step(true);
        CHECK(b.ps.grad().host() == grad_plain);
        CHECK(b.dx == dx_plain);
        const std::span<const float> task = b.layer.router_grad_task();
        const std::span<const float> aux = b.layer.router_grad_aux();
        // Wp (D, d), the embeddings (N, d), the temperature (1), in that order
        const int D = LayerOnBatch::D, d = c.cosine_dim;
        REQUIRE(task.size() == size_t(D * d + c.N * d + 1));
        REQUIRE(aux.size() == task.size());
        size_t at = 0;
        double task2 = 0.0, aux2 = 0.0;
        for (const char* part : {".router.proj", ".router.experts", ".router.log_tau_scale"}) {
            int tensor = -1;
            for (size_t k = 0; k < b.ps.tensors().size(); ++k)
                if (b.ps.tensors()[k].name == std::string("moe") + part) tensor = int(k);
            REQUIRE(tensor >= 0);
            const float* g = b.ps.g(tensor);
            for (size_t i = 0; i < b.ps.tensors()[size_t(tensor)].size; ++i, ++at) {
                CHECK(g[i] == doctest::Approx(task[at] + aux[at]).epsilon(1e-5));
                task2 += double(task[at]) * task[at];
                aux2 += double(aux[at]) * aux[at];
            }
        }
        CHECK(at == task.size());
        CHECK(task2 > 1e-8);
        CHECK(aux2 > 1e-8);
    }
}  // TEST_SUITE
