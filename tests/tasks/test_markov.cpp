// The markov task: valid transition tables, sequences that follow them, the domain skew, the
// window encoding, determinism (seed, thread count), and the exact ideal loss against brute force.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "backend/rng.h"
#include "config/config.h"
#include "tasks/markov.h"
#include "tasks/task.h"

using namespace moe;

namespace {

MarkovConfig small_markov() {
    MarkovConfig mc;
    mc.domains = 3;
    mc.vocab = 8;
    mc.branching = 3;
    mc.concentration = 0.7;
    mc.imbalance = 1.0;
    mc.seq_len = 16;
    mc.context = 4;
    return mc;
}

bool same(const Batch& a, const Batch& b) {
    return a.B == b.B && a.dim == b.dim && a.x == b.x && a.y == b.y && a.group == b.group &&
           a.token == b.token;
}

struct ThreadCount {
    int saved = omp_get_max_threads();
    ~ThreadCount() { omp_set_num_threads(saved); }
};

// The window of example i of a batch: the token of each slot, -1 where the slot is all zeros.
std::vector<int> window_of(const Batch& b, int i, int C, int V) {
    std::vector<int> w(static_cast<size_t>(C), -1);
    const float* x = b.row(i);
    for (int j = 0; j < C; ++j) {
        int ones = 0;
        for (int v = 0; v < V; ++v) {
            const float e = x[j * V + v];
            REQUIRE((e == 0.0f || e == 1.0f));
            if (e == 1.0f) {
                w[size_t(j)] = v;
                ++ones;
            }
        }
        REQUIRE(ones <= 1);
    }
    return w;
}

// Brute force over every sequence of a tiny chain: P(window, y) summed over domains, sequences and
// positions (each position 1 .. L-1 equally likely), keyed by the padded window.
std::map<std::vector<int>, std::vector<double>> brute_force(const MarkovTask& task,
                                                            const MarkovConfig& mc) {
    const int D = mc.domains, V = mc.vocab, L = mc.seq_len, C = mc.context;
    std::map<std::vector<int>, std::vector<double>> joint;
    std::vector<int> x(static_cast<size_t>(L), 0);
    int64_t total = 1;
    for (int t = 0; t < L; ++t) total *= V;
    for (int d = 0; d < D; ++d)
        for (int64_t code = 0; code < total; ++code) {
            int64_t c = code;
            for (int t = 0; t < L; ++t, c /= V) x[size_t(t)] = int(c % V);
            double p = task.domain_probabilities()[size_t(d)];
            for (int t = 0; t < L && p > 0; ++t)
                p *= t < mc.order ? 1.0 / V
                                  : task.transition(d, task.context_of(x.data() + t - mc.order),
                                                    x[size_t(t)]);
            if (p == 0) continue;
            for (int t = 1; t < L; ++t) {
                std::vector<int> w(static_cast<size_t>(C));
                for (int j = 0; j < C; ++j)
                    w[size_t(j)] = t - C + j >= 0 ? x[size_t(t - C + j)] : -1;
                auto& row = joint[w];
                row.resize(size_t(V), 0.0);
                row[size_t(x[size_t(t)])] += p / (L - 1);
            }
        }
    return joint;
}

}  // namespace

TEST_SUITE("tasks") {
    TEST_CASE(
        "the markov prefix predictor equals brute force over every sequence of a tiny chain") {
        for (int order : {1, 2}) {
            CAPTURE(order);
            MarkovConfig mc;
            mc.domains = 3;
            mc.vocab = 3;
            mc.branching = 2;
            mc.concentration = 0.8;
            mc.imbalance = 0.7;
            mc.seq_len = order == 1 ? 5 : 6;
            mc.order = order;
            mc.context = order;  // the window is irrelevant to the prefix predictor
            const MarkovTask task(mc, 0, 20000, 6, true);
            const MarkovTask window_task(mc, 0, 20000, 6, false);
            // brute force keyed by the whole padded prefix (a window of seq_len - 1 tokens)
            MarkovConfig full = mc;
            full.context = mc.seq_len - 1;
            const auto joint = brute_force(task, full);
            double expected = 0.0;
            for (const auto& [w, row] : joint) {
                double pw = 0;
                for (double p : row) pw += p;
                int first = 0;
                while (w[size_t(first)] < 0) ++first;
                const std::vector<int> prefix(w.begin() + first, w.end());
                const int t = int(prefix.size());
                for (int y = 0; y < mc.vocab; ++y) {
                    const double exact = row[size_t(y)] / pw;
                    if (row[size_t(y)] > 0) expected -= row[size_t(y)] * std::log(exact);
                    CHECK(task.prefix_probability(prefix.data(), t, y) ==
                          doctest::Approx(exact).epsilon(1e-12));
                }
            }
            CHECK(task.ideal_loss_stderr() > 0.0);
            CHECK(std::abs(task.ideal_loss() - expected) <= 4 * task.ideal_loss_stderr());
            // the same examples as the window task, whose predictor sees less: a higher loss
            CHECK(same(task.eval_set(), window_task.eval_set()));
            CHECK(task.ideal_loss() < window_task.ideal_loss());
        }
    }

    TEST_CASE("markov transition tables are sparse probability distributions") {
        const MarkovConfig mc = small_markov();
        const MarkovTask task(mc, 0, 16, 5);
        for (int d = 0; d < mc.domains; ++d)
            for (int a = 0; a < mc.vocab; ++a) {
                double sum = 0.0;
                int nonzero = 0;
                for (int b = 0; b < mc.vocab; ++b) {
                    const double p = task.transition(d, a, b);
                    CHECK(p >= 0.0);
                    sum += p;
                    nonzero += p > 0.0;
                }
                CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
                CHECK(nonzero == mc.branching);
                const int* s = task.successors(d, a);
                for (int i = 0; i < mc.branching; ++i) {
                    CHECK(s[i] >= 0);
                    CHECK(s[i] < mc.vocab);
                    if (i > 0) CHECK(s[i] > s[i - 1]);  // distinct, ascending
                    CHECK(task.transition(d, a, s[i]) > 0.0);
                }
            }
        // domains differ: the chains are drawn apart
        int differ = 0;
        for (int a = 0; a < mc.vocab; ++a)
            for (int b = 0; b < mc.vocab; ++b)
                differ += task.transition(0, a, b) != task.transition(1, a, b);
        CHECK(differ > mc.vocab);
        // order 2: V^2 contexts, each a distribution over its successors
        MarkovConfig two = mc;
        two.order = 2;
        const MarkovTask second(two, 0, 16, 5);
        REQUIRE(second.num_contexts() == mc.vocab * mc.vocab);
        for (int a = 0; a < second.num_contexts(); ++a) {
            double sum = 0.0;
            int nonzero = 0;
            for (int b = 0; b < mc.vocab; ++b) {
                sum += second.transition(1, a, b);
                nonzero += second.transition(1, a, b) > 0.0;
            }
            CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
            CHECK(nonzero == mc.branching);
        }
        // branching = vocab: a dense table
        MarkovConfig dense = mc;
        dense.branching = dense.vocab;
        const MarkovTask all(dense, 0, 16, 5);
        for (int b = 0; b < dense.vocab; ++b) CHECK(all.transition(2, 3, b) > 0.0);
    }

    TEST_CASE("markov sequences follow the transition tables and the domains follow Zipf") {
        for (int order : {1, 2}) {
            CAPTURE(order);
            MarkovConfig mc = small_markov();
            mc.order = order;
            const MarkovTask task(mc, 0, 16, 11);
            const int D = mc.domains, V = mc.vocab, L = mc.seq_len, K = task.num_contexts(),
                      n = 40000;
            CHECK(K == (order == 1 ? V : V * V));
            std::vector<double> count(size_t(D) * K * V, 0.0), first(size_t(V), 0.0),
                domain(size_t(D), 0.0);
            std::vector<int> x(static_cast<size_t>(L));
            for (int s = 0; s < n; ++s) {
                const int d = task.sequence(kStreamData, uint64_t(s), L, x.data());
                domain[size_t(d)] += 1;
                first[size_t(x[0])] += 1;
                for (int t = order; t < L; ++t)
                    count[(size_t(d) * K + size_t(task.context_of(x.data() + t - order))) * V +
                          size_t(x[size_t(t)])] += 1;
            }
            // Each frequency is a binomial proportion: within 5 standard deviations (two-sided
            // probability 6e-7 per cell; a few thousand cells here), and exactly 0 off the
            // support. Rows seen fewer than 50 times are skipped (order 2: rare contexts).
            int rows_checked = 0;
            for (int d = 0; d < D; ++d) {
                const double p = task.domain_probabilities()[size_t(d)];
                CHECK(p == doctest::Approx(1.0 / (d + 1) / (1.0 + 0.5 + 1.0 / 3.0)));  // Zipf(1)
                CHECK(std::abs(domain[size_t(d)] / n - p) <= 5 * std::sqrt(p * (1 - p) / n));
                for (int a = 0; a < K; ++a) {
                    double row = 0;
                    for (int b = 0; b < V; ++b)
                        row += count[(size_t(d) * K + size_t(a)) * V + size_t(b)];
                    for (int b = 0; b < V; ++b) {
                        const double T = task.transition(d, a, b);
                        const double f =
                            row > 0 ? count[(size_t(d) * K + size_t(a)) * V + size_t(b)] / row
                                    : 0.0;
                        if (T == 0.0)
                            CHECK(f == 0.0);
                        else if (row >= 50)
                            CHECK(std::abs(f - T) <= 5 * std::sqrt(T * (1 - T) / row) + 1e-12);
                    }
                    rows_checked += row >= 50;
                }
            }
            CHECK(rows_checked >= (order == 1 ? D * K : D * K / 2));
            for (int v = 0; v < V; ++v)
                CHECK(std::abs(first[size_t(v)] / n - 1.0 / V) <=
                      5 * std::sqrt((1.0 / V) * (1 - 1.0 / V) / n));
        }
    }

    TEST_CASE("markov examples are the windows of whole sequences with the next token as label") {
        const MarkovConfig mc = small_markov();
        const int L = mc.seq_len, C = mc.context, V = mc.vocab, B = 50;
        for (int64_t train_size : {int64_t{0}, int64_t{3}}) {
            CAPTURE(train_size);
            const MarkovTask task(mc, train_size, 16, 2);
            CHECK(task.input_dim() == C * V);
            CHECK(task.num_classes() == V);
            CHECK(task.num_groups() == mc.domains);
            Batch b;
            const int64_t step = 7;
            task.train_batch(step, B, b);
            REQUIRE(b.token.size() == size_t(B));
            std::vector<int> x(static_cast<size_t>(L));
            for (int i = 0; i < B; ++i) {
                const uint64_t q = uint64_t(step) * B + uint64_t(i);
                uint64_t n = q / uint64_t(L - 1);
                if (train_size > 0) n %= uint64_t(train_size);
                const int t = 1 + int(q % uint64_t(L - 1));
                const int d = task.sequence(kStreamData, n, L, x.data());
                const std::vector<int> w = window_of(b, i, C, V);
                for (int j = 0; j < C; ++j)
                    CHECK(w[size_t(j)] == (t - C + j >= 0 ? x[size_t(t - C + j)] : -1));
                CHECK(b.y[size_t(i)] == x[size_t(t)]);
                CHECK(b.group[size_t(i)] == d);
                CHECK(b.token[size_t(i)] == x[size_t(t - 1)]);
            }
        }
    }

    TEST_CASE("markov data depend on the seed only and not on the thread count") {
        ThreadCount restore;
        const MarkovConfig mc = small_markov();
        omp_set_num_threads(1);
        const MarkovTask a(mc, 0, 3000, 9);
        Batch ba;
        a.train_batch(4, 2048, ba);
        omp_set_num_threads(2);
        const MarkovTask b(mc, 0, 3000, 9);
        Batch bb;
        b.train_batch(4, 2048, bb);
        CHECK(same(a.eval_set(), b.eval_set()));
        CHECK(same(ba, bb));
        CHECK(a.ideal_loss() == b.ideal_loss());  // bit for bit
        const MarkovTask c(mc, 0, 3000, 10);
        Batch bc;
        c.train_batch(4, 2048, bc);
        CHECK(!same(ba, bc));
        CHECK(!same(a.eval_set(), c.eval_set()));
        // the eval set is not the training stream
        Batch first;
        a.train_batch(0, 3000, first);
        CHECK(!same(first, a.eval_set()));
    }

    TEST_CASE("the markov ideal predictor equals brute force over every sequence of a tiny chain") {
        for (auto [order, context] : {std::pair{1, 1}, {1, 2}, {1, 3}, {2, 2}, {2, 3}}) {
            // full windows at several positions, and the full prefix (context 3 = seq_len - 1)
            CAPTURE(order);
            CAPTURE(context);
            MarkovConfig mc;
            mc.domains = 2;
            mc.vocab = 3;
            mc.branching = 2;
            mc.concentration = 0.8;
            mc.imbalance = 0.7;
            mc.seq_len = order == 1 ? 4 : 5;
            mc.order = order;
            mc.context = context;
            const MarkovTask task(mc, 0, 20000, 4);
            const auto joint = brute_force(task, mc);
            double expected = 0.0;
            for (const auto& [w, row] : joint) {
                double pw = 0;
                for (double p : row) pw += p;
                for (int y = 0; y < mc.vocab; ++y) {
                    const double exact = row[size_t(y)] / pw;
                    if (row[size_t(y)] > 0) expected -= row[size_t(y)] * std::log(exact);
                    CHECK(task.ideal_probability(w.data(), y) ==
                          doctest::Approx(exact).epsilon(1e-12));
                }
            }
            // The eval set's ideal loss estimates the expected one: within 4 standard errors.
            CHECK(task.ideal_loss_stderr() > 0.0);
            CHECK(std::abs(task.ideal_loss() - expected) <= 4 * task.ideal_loss_stderr());
        }
    }
}
