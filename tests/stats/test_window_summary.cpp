// The window summary op (backend.h, window_observe) on the CPU backend against LayerWindow::observe
// on the same batches: the summary, downloaded and added to a fresh window
// (LayerWindow::set_summary), must give the window's bits (its saved form and every statistic),
// at 1 and 2 threads, with and without logits, groups and drops; the interval counts must be the
// routed counts summed over the batches (CollapseTracker's per-step counts).
#include <doctest/doctest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/routing_host.h"
#include "stats/routing_stats.h"
#include "support/plan_builder.h"
#include "support/twin.h"

using namespace moe;
using namespace moe::test;

namespace {

using W = Backend::WindowSummary;

struct Batch {
    RoutingPlan plan;
    std::vector<float> probs, logits;
    std::vector<int> groups;
    double aux = 0.0, z = 0.0;
};

// T tokens with K distinct random experts each, about a quarter of the slots dropped (all of a
// token's slots now and then), softmax probabilities of random logits (some rows with ties),
// groups in [-1, num_groups).
Batch random_batch(Draw& d, int T, int N, int K, int num_groups) {
    Batch b;
    std::vector<int> sel(size_t(T) * K);
    for (int t = 0; t < T; ++t) {
        const std::vector<int> perm = d.permutation(N);
        for (int j = 0; j < K; ++j) sel[size_t(t) * K + j] = perm[size_t(j)];
    }
    const std::vector<int> keep = d.ints(size_t(T) * K, 4);
    std::vector<uint8_t> kept(keep.size());
    for (size_t s = 0; s < keep.size(); ++s) kept[s] = keep[s] != 0;
    for (int t = 0; t < T; t += 7)
        for (int j = 0; j < K; ++j) kept[size_t(t) * K + j] = 0;
    b.plan = make_plan(T, N, K, sel, kept);
    b.logits = d.normal(size_t(T) * N, 3.0f);
    for (int t = 0; t < T; t += 5)  // ties: equal logits, equal probabilities
        for (int i = 0; i < N; ++i) b.logits[size_t(t) * N + i] = 0.5f;
    b.probs.resize(b.logits.size());
    host_softmax_rows(b.probs.data(), b.logits.data(), T, N, N);
    b.groups = d.ints(size_t(T), num_groups + 1);
    for (int& g : b.groups) g -= 1;
    b.aux = 1.0 + d.uniform(1, 0.0f, 1.0f)[0];
    b.z = d.uniform(1, 0.0f, 1.0f)[0];
    return b;
}

std::string saved(const LayerWindow& w) {
    std::ostringstream os;
    BinaryWriter bw(os);
    w.save(bw);
    return os.str();
}

bool same_double(double a, double b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

struct Variant {
    const char* name;
    bool logits, groups;
};

}  // namespace

TEST_SUITE("stats") {
    TEST_CASE("window_observe on the CPU gives LayerWindow::observe's bits") {
        struct Shape {
            int T, N, K, G;
        };
        for (const Shape sh :
             {Shape{300, 8, 2, 4}, Shape{1, 1, 1, 2}, Shape{700, 16, 3, 3}, Shape{65, 5, 1, 1}})
            for (const Variant v : {Variant{"all", true, true}, Variant{"no logits", false, true},
                                    Variant{"no groups", true, false}})
                for (int threads : {1, 2}) {
                    CAPTURE(sh.T);
                    CAPTURE(sh.N);
                    CAPTURE(v.name);
                    CAPTURE(threads);
                    cpu::CpuBackend be(threads);
                    Draw d(twin_seed("window " + std::to_string(sh.T) + " " + v.name));
                    LayerWindow host(sh.N, sh.G);
                    auto counts =
                        TwinArray<int64_t>(be, std::vector<int64_t>(W::counts_size(sh.N, sh.G), 0));
                    auto sums = TwinArray<double>(be, std::vector<double>(W::sums_size(sh.N), 0));
                    auto interval = TwinArray<int64_t>(be, std::vector<int64_t>(size_t(sh.N), 0));
                    std::vector<int64_t> routed_total(size_t(sh.N), 0);
                    for (int batch = 0; batch < 3; ++batch) {
                        // the second batch uses fewer groups than the table holds
                        const int ng = batch == 1 ? std::max(1, sh.G - 1) : sh.G;
                        const int T = batch == 2 ? std::max(1, sh.T / 2) : sh.T;
                        const Batch b = random_batch(d, T, sh.N, sh.K, ng);
                        host.observe(b.plan, b.probs.data(), v.logits ? b.logits.data() : nullptr,
                                     v.groups ? b.groups.data() : nullptr, ng, b.aux, b.z);
                        auto routed = upload(be, b.plan.routed);
                        auto dropped = upload(be, b.plan.dropped);
                        auto tok = upload(be, b.plan.tok_offsets);
                        auto probs = upload(be, b.probs);
                        auto logits = upload(be, b.logits);
                        auto groups = upload(be, b.groups);
                        auto losses = upload(be, std::vector<double>{b.aux, b.z});
                        be.window_observe(
                            counts.get(), sums.get(), interval.get(), routed.get(), dropped.get(),
                            tok.get(), probs.get(), v.logits ? logits.get() : nullptr,
                            v.groups ? groups.get() : nullptr, ng, losses.get(), T, sh.N, sh.G);
                        for (int i = 0; i < sh.N; ++i)
                            routed_total[size_t(i)] += b.plan.routed[size_t(i)];
                    }
                    LayerWindow dev(sh.N, sh.G);
                    dev.set_summary(counts.download(), sums.download());
                    CHECK(std::vector<int64_t>(dev.summary_counts().begin(),
                                               dev.summary_counts().end()) == counts.download());
                    CHECK(saved(dev) == saved(host));
                    const LayerStats a = host.finish(), b = dev.finish();
                    const auto va = layer_stat_values(a), vb = layer_stat_values(b);
                    for (size_t k = 0; k < va.size(); ++k) {
                        CAPTURE(kLayerStatColumns[k]);
                        CHECK(same_double(va[k], vb[k]));
                    }
                    CHECK(b.num_tokens == a.num_tokens);
                    CHECK(b.group_expert == a.group_expert);
                    for (int i = 0; i < sh.N; ++i) {
                        CHECK(b.experts[size_t(i)].dropped == a.experts[size_t(i)].dropped);
                        CHECK(same_double(b.experts[size_t(i)].importance,
                                          a.experts[size_t(i)].importance));
                    }
                    CHECK(interval.download() == routed_total);
                    if (v.groups && sh.G > 0) CHECK(a.num_groups == sh.G);
                }
    }

    TEST_CASE("LayerWindow::set_summary reads the summary layout") {
        // N = 2, G = 2: counts = routed (2) | dropped (2) | table (2, 2) | the 8 Count scalars;
        // sums = importance (2) | entropy, top1, lse2, aux, z. Two batches of 2 tokens, K = 2.
        LayerWindow w(2, 2);
        std::vector<int64_t> c(W::counts_size(2, 2), 0);
        std::vector<double> s(W::sums_size(2), 0.0);
        c[0] = 6;  // routed
        c[1] = 2;
        c[3] = 2;      // dropped of expert 1
        c[4 + 1] = 3;  // group 0, expert 1
        c[4 + 2] = 1;  // group 1, expert 0
        c[8 + W::tokens] = 4;
        c[8 + W::slots] = 8;
        c[8 + W::dropped_tokens] = 1;
        c[8 + W::batches] = 2;
        c[8 + W::prob_tokens] = 4;
        c[8 + W::logit_tokens] = 4;
        c[8 + W::group_tokens] = 4;
        c[8 + W::num_groups] = 2;
        s[0] = 3.0;  // importance sums
        s[1] = 1.0;
        s[2 + W::top1] = 3.0;
        s[2 + W::lse2] = 8.0;
        s[2 + W::aux] = 3.0;
        s[2 + W::z] = 1.0;
        w.observe(make_plan(1, 2, 1, {0}, {1}), nullptr, nullptr, nullptr, 0, 9.0, 9.0);
        w.set_summary(c, s);  // replaces what observe() summed
        const LayerStats st = w.finish();
        CHECK(st.num_tokens == 4);
        CHECK(st.num_batches == 2);
        CHECK(st.experts[0].tokens == 6);
        CHECK(st.experts[1].dropped == 2);
        CHECK(st.experts[1].processed == 0);
        CHECK(st.experts[0].load == doctest::Approx(0.75));
        CHECK(st.experts[0].importance == doctest::Approx(0.75));
        CHECK(st.top1_prob == doctest::Approx(0.75));
        CHECK(st.logit_lse2 == doctest::Approx(2.0));
        CHECK(st.aux_loss == doctest::Approx(1.5));
        CHECK(st.z_loss == doctest::Approx(0.5));
        CHECK(st.drop_rate == doctest::Approx(2.0 / 8.0));
        CHECK(st.dropped_token_rate == doctest::Approx(0.25));
        CHECK(st.num_groups == 2);
        CHECK(st.group_expert == std::vector<int64_t>{0, 3, 1, 0});
    }
}
