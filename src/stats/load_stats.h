// Load-balance and specialisation statistics (METRICS.md), as pure functions on integer counts.
//
// Load statistics of one MoE layer, from the routed counts A[i] of N experts (before capacity),
// with S = sum_i A[i] and load[i] = A[i] / S:
//   max_vio           = max_i A[i] / mean_i A[i] - 1 = N max_i A[i] / S - 1      (0 = perfect)
//   load_cv           = population std of load / its mean (= std(A) / mean(A))
//   load_entropy      = -sum_i load[i] ln load[i] / ln N                          (1 = uniform)
//   effective_experts = exp(-sum_i load[i] ln load[i])
//   gini              = sum_i sum_j |load[i] - load[j]| / (2 N sum_i load[i])
//                     = sum_r (2r - N + 1) A_(r) / (N S), A_(r) sorted ascending, r = 0..N-1
//   min_load, max_load = min_i / max_i load[i]
//   dead_experts      = #{i : A[i] = 0}
//
// Specialisation, from a G x N table n[g,i] = tokens of ground-truth group g whose top-1
// expert is i (n = total, n_g = row sums, n_i = column sums):
//   H(group)  = -sum_g n_g/n ln(n_g/n),  H(expert) = -sum_i n_i/n ln(n_i/n)
//   I         = sum_{g,i} n[g,i]/n ln(n n[g,i] / (n_g n_i))
//   spec_nmi  = 2 I / (H(group) + H(expert))       (arithmetic NMI, as scikit-learn's default)
//   spec_purity = sum_i max_g n[g,i] / n
//   dispatch_entropy = H(group | expert) = sum_i n_i/n H(n[.,i] / n_i)
//                    = -sum_{g,i} n[g,i]/n ln(n[g,i] / n_i)   (natural log; Chen et al. 2022)
//     in [0, ln G]: 0 when every expert sees one group; ln G when every expert sees the G
//     groups in equal shares (uniform routing of balanced groups). NaN when n = 0.
//
// Conventions for the edge cases (all tested in tests/stats/test_load_stats.cpp):
//   - 0 ln 0 = 0: an expert with zero load adds nothing to the entropies.
//   - No assignments (S = 0) or an empty table (n = 0): every ratio is undefined and is NaN;
//     the CSV writer prints NaN as an empty cell. dead_experts is still N (every A[i] = 0).
//   - N = 1: max_vio = load_cv = gini = 0, effective_experts = 1, and the normalised entropy
//     (0 / ln 1) is defined as 1: the only distribution over one expert is the uniform one.
//     normalized_entropy() uses the same rule for router_entropy.
//   - H(group) + H(expert) = 0 (one group, one expert used): spec_nmi = 1, the trivially
//     one-to-one case (scikit-learn's convention). Only one of them 0: I = 0, so spec_nmi = 0.
//   - spec_nmi is clamped to [0, 1] against rounding.
#pragma once

#include <cstdint>
#include <span>

namespace moe {

struct LoadStats {
    double max_vio;
    double load_cv;
    double load_entropy;
    double effective_experts;
    double gini;
    double min_load;
    double max_load;
    int dead_experts;
};

// counts: (N) routed counts A[i], each >= 0. NaN where undefined (see above).
double load_max_vio(std::span<const int64_t> counts);
double load_cv(std::span<const int64_t> counts);
double load_entropy(std::span<const int64_t> counts);  // normalised by ln N
double load_effective_experts(std::span<const int64_t> counts);
double load_gini(std::span<const int64_t> counts);
double load_min(std::span<const int64_t> counts);  // min_i load[i]
double load_max(std::span<const int64_t> counts);  // max_i load[i]
int load_dead_experts(std::span<const int64_t> counts);
LoadStats load_stats(std::span<const int64_t> counts);  // all of the above

// The same statistics from real-valued weight masses m[i] >= 0 (the dense routers' dispatch
// weight mass, docs/metrics.md): load[i] = m[i] / sum_j m[j], the formulas above with m for A.
// A mass is never exactly 0, so dead_experts counts the experts with load[i] < 1/(10N), the
// threshold of the collapse events. NaN where the total is 0.
LoadStats load_stats_weighted(std::span<const double> mass);

// Entropy (natural log) of a probability vector, with 0 ln 0 = 0: -sum_i p[i] ln p[i].
double entropy(std::span<const double> p);
// -sum_i p[i] ln p[i] / ln N for N = p.size(); 1 when N = 1 (see above). p sums to 1.
double normalized_entropy(std::span<const double> p);

// table: (G, N) row-major, table[g*N + i] = tokens of group g whose top-1 expert is i.
double spec_nmi(std::span<const int64_t> table, int G, int N);
double spec_purity(std::span<const int64_t> table, int G, int N);
double dispatch_entropy(std::span<const int64_t> table, int G, int N);

}  // namespace moe
