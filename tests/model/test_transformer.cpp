// The transformer's pieces (model.kind: transformer): the attention and embedding ops of the CPU
// backend against a plain double-precision reference and by central differences, the causal mask,
// and the whole transformer (embeddings, positions, attention, MoE and dense FFNs, the LM head,
// tied or not) gradient-checked tensor by tensor on a tiny config.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/model.h"
#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

struct AttnShape {
    int nseq, S, H, hd;
    int D() const { return H * hd; }
    int T() const { return nseq * S; }
    size_t probs() const { return size_t(nseq) * H * S * S; }
};

// out (T, D) by the definition, in double: softmax over j <= i of scale <q_i, k_j>.
std::vector<double> attention_reference(const std::vector<float>& qkv, const AttnShape& a,
                                        double scale) {
    const int D = a.D();
    std::vector<double> out(size_t(a.T()) * D, 0.0);
    for (int s = 0; s < a.nseq; ++s)
        for (int h = 0; h < a.H; ++h)
            for (int i = 0; i < a.S; ++i) {
                const float* q = qkv.data() + size_t(s * a.S + i) * 3 * D + h * a.hd;
                std::vector<double> w(size_t(i) + 1);
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j <= i; ++j) {
                    const float* k = qkv.data() + size_t(s * a.S + j) * 3 * D + D + h * a.hd;
                    double d = 0.0;
                    for (int c = 0; c < a.hd; ++c) d += double(q[c]) * k[c];
                    w[size_t(j)] = scale * d;
                    mx = std::max(mx, w[size_t(j)]);
                }
                for (double& v : w) sum += v = std::exp(v - mx);
                for (int j = 0; j <= i; ++j) {
                    const float* v = qkv.data() + size_t(s * a.S + j) * 3 * D + 2 * D + h * a.hd;
                    for (int c = 0; c < a.hd; ++c)
                        out[size_t(s * a.S + i) * D + h * a.hd + c] += w[size_t(j)] / sum * v[c];
                }
            }
    return out;
}

Config tiny_transformer() {
    Config cfg;
    cfg.seed = 11;
    cfg.data.task = TaskKind::markov;
    cfg.data.markov.seq_len = 5;  // S = 4 positions
    cfg.model.kind = ModelKind::transformer;
    cfg.model.d_model = 6;
    cfg.model.heads = 2;
    cfg.model.layers = 2;
    cfg.model.moe_every = 2;  // block 0 dense, block 1 MoE
    cfg.experts.count = 3;
    cfg.experts.d_ff = 4;
    cfg.router.k = 2;
    cfg.balance.loss = BalanceLoss::switch_loss;
    cfg.balance.alpha = 0.1;
    cfg.balance.z_loss = 0.01;
    return cfg;
}

// Every tensor of a tiny transformer (2 sequences of 4 tokens, vocabulary 5) by central
// differences; probes that change an MoE layer's plan are skipped.
void check_transformer(const Config& cfg, double factor, const std::string& what) {
    CAPTURE(what);
    const int S = sequence_shape(cfg.data).positions, T = 2 * S, V = 5;
    auto be = backend_create(Device::cpu, 1);
    Model model(cfg, 7, V, T);
    ParamStore& ps = model.params();
    for (MoeLayer* m : model.moe_layers())
        fill_normal(ps.p(m->router_w), ps.tensors()[size_t(m->router_w)].size, 31, 1.5f);
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        if (t.init == Init::zeros) fill_normal(ps.p(int(k)), t.size, 40 + k, 0.2f);
        if (t.init == Init::ones) fill_normal(ps.p(int(k)), t.size, 40 + k, 0.2f, 1.0f);
    }
    // embeddings with unit entries: attention scores of order 1, so the softmax is not flat
    for (size_t k = 0; k < ps.tensors().size(); ++k)
        if (ps.tensors()[k].name.rfind("embed.", 0) == 0)
            fill_normal(ps.p(int(k)), ps.tensors()[k].size, 60 + k, 1.0f);
    const std::vector<int> tokens = {0, 3, 3, 1, 4, 2, 0, 3};  // a repeated token: row sums
    std::vector<int> labels(static_cast<size_t>(T));
    for (int t = 0; t < T; ++t) labels[size_t(t)] = (t * 3 + 1) % V;
    const std::vector<float> x(size_t(T) * 7, 0.0f);  // unused by the transformer
    Pass info;
    info.training = true;
    info.step = 3;
    info.capacity_factor = factor;
    info.token_ids = tokens.data();
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
        }
        return s;
    };
    std::vector<std::string> names;
    for (size_t k = 0; k < ps.tensors().size(); ++k) {
        const ParamTensor& t = ps.tensors()[k];
        names.push_back(t.name);
        expect_gradient(check_gradient(f, ps.p(int(k)), grad.data() + t.offset, t.size, {}, sig),
                        what + " " + t.name, 3e-3);
    }
    // the pieces the check must have covered
    for (const char* n : {"embed.token", "embed.position", "block0.attn.qkv.w", "block0.attn.o.w",
                          "block0.attn.norm.g", "block1.attn.qkv.w", "final.norm.g"})
        CHECK_MESSAGE(std::find(names.begin(), names.end(), n) != names.end(), n);
    const bool has_head = std::find(names.begin(), names.end(), "head.w") != names.end();
    CHECK(has_head == !cfg.model.tie_embeddings);
    CHECK(std::find(names.begin(), names.end(), "head.b") == names.end());
}

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("attention_forward equals the double-precision definition") {
        auto be = backend_create(Device::cpu, 2);
        const AttnShape a{3, 7, 2, 5};
        const std::vector<float> qkv = normal_vector(size_t(a.T()) * 3 * a.D(), 5);
        std::vector<float> out(size_t(a.T()) * a.D(), -7.0f), probs(a.probs(), -7.0f);
        const float scale = 1.0f / std::sqrt(float(a.hd));
        be->attention_forward(out.data(), probs.data(), qkv.data(), a.nseq, a.S, a.H, a.hd, scale);
        const std::vector<double> ref = attention_reference(qkv, a, scale);
        for (size_t i = 0; i < out.size(); ++i)
            CHECK(out[i] == doctest::Approx(ref[i]).epsilon(1e-5));
        // each row of P is a distribution over the positions up to the query's, 0 after it
        for (int r = 0; r < a.nseq * a.H * a.S; ++r) {
            const int i = r % a.S;
            double sum = 0.0;
            for (int j = 0; j < a.S; ++j) {
                const float p = probs[size_t(r) * a.S + j];
                if (j > i)
                    CHECK(p == 0.0f);
                else
                    CHECK(p > 0.0f);
                sum += p;
            }
            CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
        }
    }

    TEST_CASE("attention is causal: a later token never changes an earlier output") {
        auto be = backend_create(Device::cpu, 1);
        const AttnShape a{2, 6, 3, 4};
        std::vector<float> qkv = normal_vector(size_t(a.T()) * 3 * a.D(), 8);
        std::vector<float> out(size_t(a.T()) * a.D()), out2(out.size()), probs(a.probs());
        be->attention_forward(out.data(), probs.data(), qkv.data(), a.nseq, a.S, a.H, a.hd, 0.5f);
        // change every value of position 4 of sequence 0, and all of sequence 1
        const int D = a.D();
        for (int c = 0; c < 3 * D; ++c) qkv[size_t(4) * 3 * D + c] += 1.0f;
        for (size_t i = size_t(a.S) * 3 * D; i < qkv.size(); ++i) qkv[i] *= -2.0f;
        be->attention_forward(out2.data(), probs.data(), qkv.data(), a.nseq, a.S, a.H, a.hd, 0.5f);
        for (int t = 0; t < 4; ++t)
            for (int c = 0; c < D; ++c) CHECK(out[size_t(t) * D + c] == out2[size_t(t) * D + c]);
        CHECK(out[size_t(4) * D] != out2[size_t(4) * D]);
    }

    TEST_CASE("attention_backward passes a gradient check") {
        auto be = backend_create(Device::cpu, 2);
        const AttnShape a{2, 5, 2, 3};
        std::vector<float> qkv = normal_vector(size_t(a.T()) * 3 * a.D(), 12);
        const std::vector<float> w = normal_vector(size_t(a.T()) * a.D(), 13);
        std::vector<float> out(w.size()), probs(a.probs()), dqkv(qkv.size()), ds(a.probs());
        const float scale = 0.7f;
        auto f = [&] {
            be->attention_forward(out.data(), probs.data(), qkv.data(), a.nseq, a.S, a.H, a.hd,
                                  scale);
            return weighted_sum(w.data(), out.data(), out.size());
        };
        f();
        be->attention_backward(dqkv.data(), ds.data(), w.data(), qkv.data(), probs.data(), a.nseq,
                               a.S, a.H, a.hd, scale);
        expect_gradient(check_gradient(f, qkv.data(), dqkv.data(), qkv.size()), "dqkv", 2e-3);
    }

    TEST_CASE("attention gives the same bits at 1 and 3 threads") {
        const AttnShape a{5, 9, 3, 4};
        const std::vector<float> qkv = normal_vector(size_t(a.T()) * 3 * a.D(), 21);
        const std::vector<float> dout = normal_vector(size_t(a.T()) * a.D(), 22);
        std::vector<std::vector<float>> res;
        for (int threads : {1, 3}) {
            auto be = backend_create(Device::cpu, threads);
            std::vector<float> out(dout.size()), probs(a.probs()), dqkv(qkv.size()), ds(a.probs());
            be->attention_forward(out.data(), probs.data(), qkv.data(), a.nseq, a.S, a.H, a.hd,
                                  0.5f);
            be->attention_backward(dqkv.data(), ds.data(), dout.data(), qkv.data(), probs.data(),
                                   a.nseq, a.S, a.H, a.hd, 0.5f);
            out.insert(out.end(), dqkv.begin(), dqkv.end());
            res.push_back(out);
        }
        CHECK(res[0] == res[1]);
    }

    TEST_CASE("embedding ops: lookup and row sums in token order") {
        auto be = backend_create(Device::cpu, 2);
        const int V = 4, D = 3, T = 6;
        const std::vector<int> ids = {2, 0, 2, 3, 2, 0};  // row 1 unused
        const std::vector<float> table = normal_vector(size_t(V) * D, 3);
        std::vector<float> out(size_t(T) * D, 1.0f);
        be->embedding_forward(out.data(), table.data(), ids.data(), T, D, true);
        for (int t = 0; t < T; ++t)
            for (int d = 0; d < D; ++d)
                CHECK(out[size_t(t) * D + d] == 1.0f + table[size_t(ids[size_t(t)]) * D + d]);
        be->embedding_forward(out.data(), table.data(), ids.data(), T, D, false);
        for (int t = 0; t < T; ++t)
            for (int d = 0; d < D; ++d)
                CHECK(out[size_t(t) * D + d] == table[size_t(ids[size_t(t)]) * D + d]);
        // backward accumulates: dtable[v] += the rows of the tokens of v, in ascending t
        const std::vector<float> dout = normal_vector(size_t(T) * D, 4);
        std::vector<float> dt(size_t(V) * D, 0.5f);
        be->embedding_backward(dt.data(), dout.data(), ids.data(), T, V, D);
        for (int d = 0; d < D; ++d) {
            CHECK(dt[size_t(1) * D + d] == 0.5f);
            CHECK(dt[size_t(0) * D + d] ==
                  (0.5f + dout[size_t(1) * D + d]) + dout[size_t(5) * D + d]);
            CHECK(dt[size_t(2) * D + d] ==
                  ((0.5f + dout[size_t(0) * D + d]) + dout[size_t(2) * D + d]) +
                      dout[size_t(4) * D + d]);
            CHECK(dt[size_t(3) * D + d] == 0.5f + dout[size_t(3) * D + d]);
        }
    }

    TEST_CASE("transformer: gradient check of every tensor, untied head") {
        check_transformer(tiny_transformer(), 0.0, "untied");
    }

    TEST_CASE("transformer: gradient check of every tensor, tied head, capacity drops") {
        Config cfg = tiny_transformer();
        cfg.model.tie_embeddings = true;
        cfg.model.heads = 3;
        check_transformer(cfg, 0.75, "tied");
    }

    TEST_CASE("transformer: gradient check with the answer-only loss of modular") {
        Config cfg = tiny_transformer();
        cfg.data.task = TaskKind::modular;  // S = 4, only position 3 trained
        check_transformer(cfg, 0.0, "answer-only untied");
        cfg.model.tie_embeddings = true;
        check_transformer(cfg, 0.75, "answer-only tied, capacity drops");
    }

    TEST_CASE("transformer: the answer-only loss is the cross-entropy of the answer rows") {
        // The same parameters (same seed and shapes) with every position trained (markov) and
        // with only the last (modular): the masked loss, by hand from the full model's logits.
        Config full = tiny_transformer(), masked = tiny_transformer();
        masked.data.task = TaskKind::modular;
        const int S = 4, T = 2 * S, V = 5;
        auto be = backend_create(Device::cpu, 1);
        Model mf(full, 7, V, T), mm(masked, 7, V, T);
        REQUIRE(mf.params().data().host() == mm.params().data().host());
        const std::vector<int> tokens = {0, 3, 3, 1, 4, 2, 0, 3};
        std::vector<int> labels = {1, 2, 3, 4, 0, 1, 2, 3};
        const std::vector<float> x(size_t(T) * 7, 0.0f);
        Pass info;
        info.token_ids = tokens.data();
        info.capacity_factor = 0.0;
        const LossParts lf = mf.forward(*be, x.data(), labels.data(), T, info);
        CHECK(lf.targets == T);
        const std::vector<float> logits(mf.logits(), mf.logits() + size_t(T) * V);
        double ce = 0.0;
        int64_t correct = 0;
        for (int t : {3, 7}) {  // the answer rows: position 3 of each sequence
            const float* l = logits.data() + size_t(t) * V;
            double mx = l[0], sum = 0.0;
            int arg = 0;
            for (int v = 1; v < V; ++v)
                if (l[v] > mx) mx = l[v], arg = v;
            for (int v = 0; v < V; ++v) sum += std::exp(double(l[v]) - mx);
            ce += (std::log(sum) + mx - l[labels[size_t(t)]]) / 2.0;
            correct += arg == labels[size_t(t)];
        }
        const LossParts lm = mm.forward(*be, x.data(), labels.data(), T, info);
        CHECK(lm.targets == 2);
        CHECK(lm.task == doctest::Approx(ce).epsilon(1e-5));
        CHECK(lm.correct == correct);
        CHECK(lm.aux == lf.aux);  // the MoE layers see every row either way
        // the labels of the untrained rows do not matter
        for (int t : {0, 1, 2, 4, 5, 6}) labels[size_t(t)] = (labels[size_t(t)] + 2) % V;
        CHECK(mm.forward(*be, x.data(), labels.data(), T, info).task == lm.task);
    }

    TEST_CASE("transformer: a token's logits depend on its prefix only") {
        Config cfg = tiny_transformer();
        const int S = 4, T = 2 * S, V = 5;
        auto be = backend_create(Device::cpu, 1);
        Model model(cfg, 7, V, T);
        std::vector<int> tokens = {0, 3, 3, 1, 4, 2, 0, 3};
        const std::vector<int> labels(static_cast<size_t>(T), 0);
        const std::vector<float> x(size_t(T) * 7, 0.0f);
        Pass info;
        info.token_ids = tokens.data();
        // dropless, so one token's routing cannot take capacity from another
        info.capacity_factor = 0.0;
        model.forward(*be, x.data(), labels.data(), T, info);
        const std::vector<float> a(model.logits(), model.logits() + size_t(T) * V);
        tokens[2] = 1;  // position 2 of sequence 0
        model.forward(*be, x.data(), labels.data(), T, info);
        const std::vector<float> b(model.logits(), model.logits() + size_t(T) * V);
        for (int t = 0; t < T; ++t) {
            const bool same =
                std::equal(a.begin() + t * V, a.begin() + (t + 1) * V, b.begin() + t * V);
            CHECK_MESSAGE(same == (t < 2 || t >= S), "token ", t);
        }
    }
}  // TEST_SUITE
