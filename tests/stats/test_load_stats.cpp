// Load-balance and specialisation statistics against examples worked out by hand
// (formulas in src/stats/load_stats.h and METRICS.md).
#include "stats/load_stats.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using moe::LoadStats;

namespace {

LoadStats stats_of(std::vector<int64_t> a) {
    return moe::load_stats(a);
}

bool all_ratios_nan(const LoadStats& s) {
    return std::isnan(s.max_vio) && std::isnan(s.load_cv) && std::isnan(s.load_entropy) &&
           std::isnan(s.effective_experts) && std::isnan(s.gini) && std::isnan(s.min_load) &&
           std::isnan(s.max_load);
}

}  // namespace

TEST_SUITE("stats") {
    TEST_CASE("load stats: skewed counts with a zero-load expert") {
        // A = {6, 3, 0, 3}, N = 4, S = 12, load = {1/2, 1/4, 0, 1/4}, mean A = 3.
        //   max_vio = max A / mean A - 1 = 6/3 - 1 = 1
        //   load_cv = std(A)/mean(A): deviations {3, 0, -3, 0}, var = 18/4 = 4.5,
        //             cv = sqrt(4.5)/3 = 1/sqrt(2)
        //   entropy = -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) with 0 ln 0 = 0 = 1.5 ln 2;
        //             normalised: 1.5 ln 2 / ln 4 = 0.75; effective = exp(1.5 ln 2) = 2^1.5
        //   gini    = sum_ij |l_i - l_j| / (2 N): pairs i<j: .25 + .25 + .5 + 0 + .25 + .25 = 1.5,
        //             both orders 3.0, / 8 = 0.375
        //   min 0, max 1/2, dead 1
        const LoadStats s = stats_of({6, 3, 0, 3});
        CHECK(s.max_vio == doctest::Approx(1.0));
        CHECK(s.load_cv == doctest::Approx(1.0 / std::sqrt(2.0)));
        CHECK(s.load_entropy == doctest::Approx(0.75));
        CHECK(s.effective_experts == doctest::Approx(std::pow(2.0, 1.5)));
        CHECK(s.gini == doctest::Approx(0.375));
        CHECK(s.min_load == 0.0);
        CHECK(s.max_load == 0.5);
        CHECK(s.dead_experts == 1);
    }

    TEST_CASE("load stats: one expert takes everything") {
        // A = {0, 8, 0}, N = 3: load = {0, 1, 0}.
        //   max_vio = 8 / (8/3) - 1 = 2 (= N - 1)
        //   cv: mean 8/3, deviations {-8/3, 16/3, -8/3}, var = (64 + 256 + 64)/27 = 384/27,
        //       std = sqrt(384)/sqrt(27), cv = std / (8/3) = sqrt(2) (= sqrt(N - 1))
        //   entropy 0 (1 ln 1 = 0, 0 ln 0 = 0), effective = e^0 = 1
        //   gini: pairs |0-1| twice + |0-0| = 2, both orders 4, / (2*3) = 2/3 (= (N-1)/N)
        const LoadStats s = stats_of({0, 8, 0});
        CHECK(s.max_vio == doctest::Approx(2.0));
        CHECK(s.load_cv == doctest::Approx(std::sqrt(2.0)));
        CHECK(s.load_entropy == doctest::Approx(0.0));
        CHECK(s.effective_experts == doctest::Approx(1.0));
        CHECK(s.gini == doctest::Approx(2.0 / 3.0));
        CHECK(s.min_load == 0.0);
        CHECK(s.max_load == 1.0);
        CHECK(s.dead_experts == 2);
    }

    TEST_CASE("load stats: perfect balance") {
        // A = {2, 2, 2, 2}: load 1/4 each; max_vio 0, cv 0, entropy ln 4 / ln 4 = 1, effective 4,
        // gini 0, min = max = 1/4.
        const LoadStats s = stats_of({2, 2, 2, 2});
        CHECK(s.max_vio == 0.0);
        CHECK(s.load_cv == 0.0);
        CHECK(s.load_entropy == doctest::Approx(1.0));
        CHECK(s.effective_experts == doctest::Approx(4.0));
        CHECK(s.gini == 0.0);
        CHECK(s.min_load == 0.25);
        CHECK(s.max_load == 0.25);
        CHECK(s.dead_experts == 0);
    }

    TEST_CASE("load stats: N = 1") {
        // One expert with A = {5}: load {1}. max_vio = 5/5 - 1 = 0, cv = 0, gini = 0,
        // effective = exp(0) = 1; the normalised entropy 0 / ln 1 is 1 by convention (the only
        // distribution over one expert is the uniform one).
        const LoadStats s = stats_of({5});
        CHECK(s.max_vio == 0.0);
        CHECK(s.load_cv == 0.0);
        CHECK(s.load_entropy == 1.0);
        CHECK(s.effective_experts == 1.0);
        CHECK(s.gini == 0.0);
        CHECK(s.min_load == 1.0);
        CHECK(s.max_load == 1.0);
        CHECK(s.dead_experts == 0);

        const LoadStats z = stats_of({0});
        CHECK(all_ratios_nan(z));
        CHECK(z.dead_experts == 1);
    }

    TEST_CASE("load stats: no assignments are undefined (NaN), not zero") {
        const LoadStats s = stats_of({0, 0, 0});
        CHECK(all_ratios_nan(s));
        CHECK(s.dead_experts == 3);
        CHECK(all_ratios_nan(stats_of({})));
        CHECK(stats_of({}).dead_experts == 0);
    }

    TEST_CASE("load stats: the single functions agree with load_stats") {
        const std::vector<int64_t> a = {4, 3, 1};
        const LoadStats s = moe::load_stats(a);
        CHECK(moe::load_max_vio(a) == s.max_vio);
        CHECK(moe::load_cv(a) == s.load_cv);
        CHECK(moe::load_entropy(a) == s.load_entropy);
        CHECK(moe::load_effective_experts(a) == s.effective_experts);
        CHECK(moe::load_gini(a) == s.gini);
        CHECK(moe::load_min(a) == s.min_load);
        CHECK(moe::load_max(a) == s.max_load);
        CHECK(moe::load_dead_experts(a) == s.dead_experts);
        // A = {4, 3, 1}, S = 8: gini by the sorted form: sorted {1, 3, 4}, sum_r (2r - 2) A_(r)
        // = -2 + 0 + 8 = 6, / (N S) = 6 / 24 = 0.25. Pairwise on loads {.5, .375, .125}:
        // .125 + .375 + .25 = .75, both orders 1.5, / (2*3) = 0.25.
        CHECK(s.gini == doctest::Approx(0.25));
        // cv: var = (16/9 + 1/9 + 25/9) / 3 = 14/9, cv = (sqrt(14)/3) / (8/3) = sqrt(14)/8
        CHECK(s.load_cv == doctest::Approx(std::sqrt(14.0) / 8.0));
    }

    TEST_CASE("entropy helpers") {
        // p = {1/2, 1/2, 0}: H = ln 2 (0 ln 0 = 0), normalised ln 2 / ln 3.
        const std::vector<double> p = {0.5, 0.5, 0.0};
        CHECK(moe::entropy(p) == doctest::Approx(std::log(2.0)));
        CHECK(moe::normalized_entropy(p) == doctest::Approx(std::log(2.0) / std::log(3.0)));
        const std::vector<double> one = {1.0};
        CHECK(moe::normalized_entropy(one) == 1.0);
        CHECK(std::isnan(moe::normalized_entropy(std::vector<double>{})));
    }

    TEST_CASE("spec_nmi and spec_purity: partial specialisation") {
        // G = 2 groups x N = 3 experts:
        //          e0 e1 e2 | n_g
        //   g0      3  1  0 |  4
        //   g1      0  1  3 |  4
        //   n_i     3  2  3 |  n = 8
        // H(group)  = ln 2
        // H(expert) = 2 * 3/8 ln(8/3) + 2/8 ln 4 = 0.75 ln(8/3) + 0.25 ln 4
        // I = 3/8 ln(8*3/(4*3)) + 1/8 ln(8*1/(4*2)) + 1/8 ln(1) + 3/8 ln(8*3/(4*3)) = 0.75 ln 2
        // NMI = 2 I / (H(group) + H(expert)) = 1.5 ln 2 / (ln 2 + 0.75 ln(8/3) + 0.25 ln 4)
        //     = 1.0397208 / 1.7753430 = 0.5856451
        // purity = (max 3 + max 1 + max 3) / 8 = 7/8
        const std::vector<int64_t> table = {3, 1, 0, 0, 1, 3};
        CHECK(moe::spec_nmi(table, 2, 3) == doctest::Approx(0.5856451));
        CHECK(moe::spec_purity(table, 2, 3) == doctest::Approx(0.875));
    }

    TEST_CASE("spec_nmi and spec_purity: one-to-one, independent, degenerate") {
        // One-to-one (g0 -> e1, g1 -> e2): I = H(group) = H(expert), NMI = 1, purity 1.
        const std::vector<int64_t> one_to_one = {0, 5, 0, 0, 0, 2};
        CHECK(moe::spec_nmi(one_to_one, 2, 3) == doctest::Approx(1.0));
        CHECK(moe::spec_nmi(one_to_one, 2, 3) <= 1.0);
        CHECK(moe::spec_purity(one_to_one, 2, 3) == 1.0);

        // Independent: rows proportional, every n n_gi / (n_g n_i) = 1, I = 0, NMI = 0.
        // purity = (2 + 2) / 6 = 2/3.
        const std::vector<int64_t> independent = {2, 2, 1, 1};
        CHECK(moe::spec_nmi(independent, 2, 2) == doctest::Approx(0.0));
        CHECK(moe::spec_purity(independent, 2, 2) == doctest::Approx(2.0 / 3.0));

        // One group spread over two experts: H(group) = 0, H(expert) = ln 2, I = 0: NMI 0, purity 1.
        const std::vector<int64_t> one_group = {2, 2};
        CHECK(moe::spec_nmi(one_group, 1, 2) == 0.0);
        CHECK(moe::spec_purity(one_group, 1, 2) == 1.0);

        // One group, one expert used: H(group) + H(expert) = 0: NMI 1 by convention.
        const std::vector<int64_t> single = {0, 4, 0};
        CHECK(moe::spec_nmi(single, 1, 3) == 1.0);
        CHECK(moe::spec_purity(single, 1, 3) == 1.0);

        // Empty table: undefined.
        const std::vector<int64_t> empty = {0, 0, 0, 0};
        CHECK(std::isnan(moe::spec_nmi(empty, 2, 2)));
        CHECK(std::isnan(moe::spec_purity(empty, 2, 2)));
    }

    TEST_CASE("dispatch_entropy: H of group given the top-1 expert by hand") {
        // The partial table above:
        //          e0 e1 e2
        //   g0      3  1  0
        //   g1      0  1  3
        // e0 and e2 each see one group (entropy 0); e1 sees g0 and g1 once each (entropy ln 2)
        // and holds 2 of the 8 tokens: H(group | expert) = 2/8 ln 2 = 0.1732868.
        const std::vector<int64_t> table = {3, 1, 0, 0, 1, 3};
        CHECK(moe::dispatch_entropy(table, 2, 3) == doctest::Approx(0.25 * std::log(2.0)));

        // Three groups, two experts, unequal columns:
        //          e0 e1
        //   g0      2  0
        //   g1      1  3
        //   g2      1  1
        // e0 (4 tokens): shares 1/2, 1/4, 1/4 -> 1/2 ln 2 + 2 (1/4 ln 4) = 1.5 ln 2
        // e1 (4 tokens): shares 0, 3/4, 1/4   -> 3/4 ln(4/3) + 1/4 ln 4
        // H = 1/2 (1.5 ln 2) + 1/2 (3/4 ln(4/3) + 1/2 ln 2) = ln 2 + 3/8 ln(4/3) = 0.8010280
        const std::vector<int64_t> three = {2, 0, 1, 3, 1, 1};
        CHECK(moe::dispatch_entropy(three, 3, 2) == doctest::Approx(0.8010280));

        // Uniform routing of balanced groups: every expert sees the K groups equally: ln K.
        const std::vector<int64_t> uniform = {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
        CHECK(moe::dispatch_entropy(uniform, 4, 4) == doctest::Approx(std::log(4.0)));
        // Every expert sees one group (even with two experts on one group): 0.
        const std::vector<int64_t> pure = {3, 4, 0, 0, 0, 0, 2, 0, 0, 0, 0, 6};
        CHECK(moe::dispatch_entropy(pure, 3, 4) == 0.0);
        // Empty table: undefined.
        const std::vector<int64_t> empty = {0, 0, 0, 0};
        CHECK(std::isnan(moe::dispatch_entropy(empty, 2, 2)));
    }

}  // TEST_SUITE
