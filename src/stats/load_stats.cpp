#include "stats/load_stats.h"

#include "backend/check.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace moe {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int64_t total(std::span<const int64_t> counts) {
    int64_t s = 0;
    for (int64_t a : counts) {
        MOESIM_CHECK(a >= 0, "statistics invariant");
        s += a;
    }
    return s;
}

// -sum_i (c[i]/s) ln (c[i]/s) over integer counts with sum s > 0; 0 ln 0 = 0.
double count_entropy(std::span<const int64_t> counts, int64_t s) {
    double h = 0.0;
    const double ds = double(s);
    for (int64_t a : counts)
        if (a > 0) {
            const double q = double(a) / ds;
            h -= q * std::log(q);
        }
    return h;
}

}  // namespace

double load_max_vio(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    const int64_t mx = *std::max_element(counts.begin(), counts.end());
    return double(counts.size()) * double(mx) / double(s) - 1.0;
}

double load_cv(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    const double n = double(counts.size());
    const double mean = double(s) / n;
    double var = 0.0;
    for (int64_t a : counts) var += (double(a) - mean) * (double(a) - mean);
    var /= n;  // population variance
    return std::sqrt(var) / mean;
}

double load_entropy(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    if (counts.size() == 1) return 1.0;
    return count_entropy(counts, s) / std::log(double(counts.size()));
}

double load_effective_experts(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    return std::exp(count_entropy(counts, s));
}

double load_gini(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    // sum_{i,j} |A_i - A_j| = 2 sum_r (2r - N + 1) A_(r) with A sorted ascending: exact in
    // integers (N^2 max A stays far below 2^63 for any window this simulator logs).
    std::vector<int64_t> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());
    const int64_t n = int64_t(sorted.size());
    int64_t num = 0;
    for (int64_t r = 0; r < n; ++r) num += (2 * r - n + 1) * sorted[size_t(r)];
    return double(num) / (double(n) * double(s));
}

double load_min(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    return double(*std::min_element(counts.begin(), counts.end())) / double(s);
}

double load_max(std::span<const int64_t> counts) {
    const int64_t s = total(counts);
    if (counts.empty() || s == 0) return kNaN;
    return double(*std::max_element(counts.begin(), counts.end())) / double(s);
}

int load_dead_experts(std::span<const int64_t> counts) {
    return int(std::count(counts.begin(), counts.end(), int64_t{0}));
}

LoadStats load_stats(std::span<const int64_t> counts) {
    return LoadStats{load_max_vio(counts), load_cv(counts),
                     load_entropy(counts), load_effective_experts(counts),
                     load_gini(counts),    load_min(counts),
                     load_max(counts),     load_dead_experts(counts)};
}

LoadStats load_stats_weighted(std::span<const double> mass) {
    const size_t n = mass.size();
    LoadStats out{kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, 0};
    double s = 0.0;
    for (double m : mass) {
        MOESIM_CHECK(m >= 0.0, "statistics invariant");
        s += m;
    }
    if (n == 0 || !(s > 0.0)) {
        out.dead_experts = int(n);
        return out;
    }
    const double dn = double(n);
    std::vector<double> load(mass.begin(), mass.end());
    for (double& l : load) l /= s;
    std::sort(load.begin(), load.end());
    const double mean = 1.0 / dn;
    double var = 0.0, h = 0.0, gini = 0.0;
    int dead = 0;
    for (size_t r = 0; r < n; ++r) {
        const double l = load[r];
        var += (l - mean) * (l - mean);
        if (l > 0.0) h -= l * std::log(l);
        gini += (2.0 * double(r) - dn + 1.0) * l;
        if (l < 0.1 / dn) ++dead;
    }
    out.max_vio = dn * load.back() - 1.0;
    out.load_cv = std::sqrt(var / dn) / mean;
    out.load_entropy = n == 1 ? 1.0 : h / std::log(dn);
    out.effective_experts = std::exp(h);
    out.gini = gini / dn;  // sum_i load[i] = 1
    out.min_load = load.front();
    out.max_load = load.back();
    out.dead_experts = dead;
    return out;
}

double entropy(std::span<const double> p) {
    double h = 0.0;
    for (double q : p)
        if (q > 0.0) h -= q * std::log(q);
    return h;
}

double normalized_entropy(std::span<const double> p) {
    if (p.empty()) return kNaN;
    if (p.size() == 1) return 1.0;
    return entropy(p) / std::log(double(p.size()));
}

double spec_nmi(std::span<const int64_t> table, int G, int N) {
    MOESIM_CHECK(G >= 0 && N >= 0 && table.size() == size_t(G) * size_t(N), "statistics invariant");
    int64_t n = 0;
    for (int64_t c : table) {
        MOESIM_CHECK(c >= 0, "statistics invariant");
        n += c;
    }
    if (n == 0) return kNaN;
    std::vector<int64_t> row(size_t(G), 0), col(size_t(N), 0);
    for (int g = 0; g < G; ++g)
        for (int i = 0; i < N; ++i) {
            const int64_t c = table[size_t(g) * size_t(N) + size_t(i)];
            row[size_t(g)] += c;
            col[size_t(i)] += c;
        }
    const double h_group = count_entropy(row, n);
    const double h_expert = count_entropy(col, n);
    if (h_group + h_expert <= 0.0) return 1.0;  // one group, one expert: trivially one-to-one
    const double dn = double(n);
    double mi = 0.0;
    for (int g = 0; g < G; ++g)
        for (int i = 0; i < N; ++i) {
            const int64_t c = table[size_t(g) * size_t(N) + size_t(i)];
            if (c == 0) continue;
            mi += double(c) / dn *
                  std::log(dn * double(c) / (double(row[size_t(g)]) * double(col[size_t(i)])));
        }
    const double nmi = 2.0 * mi / (h_group + h_expert);
    return std::clamp(nmi, 0.0, 1.0);
}

double spec_purity(std::span<const int64_t> table, int G, int N) {
    MOESIM_CHECK(G >= 0 && N >= 0 && table.size() == size_t(G) * size_t(N), "statistics invariant");
    int64_t n = 0, dominant = 0;
    for (int i = 0; i < N; ++i) {
        int64_t best = 0;
        for (int g = 0; g < G; ++g) {
            const int64_t c = table[size_t(g) * size_t(N) + size_t(i)];
            n += c;
            best = std::max(best, c);
        }
        dominant += best;
    }
    if (n == 0) return kNaN;
    return double(dominant) / double(n);
}

double dispatch_entropy(std::span<const int64_t> table, int G, int N) {
    MOESIM_CHECK(G >= 0 && N >= 0 && table.size() == size_t(G) * size_t(N), "statistics invariant");
    int64_t n = 0;
    for (int64_t c : table) {
        MOESIM_CHECK(c >= 0, "statistics invariant");
        n += c;
    }
    if (n == 0) return kNaN;
    double h = 0.0;
    for (int i = 0; i < N; ++i) {
        int64_t col = 0;
        for (int g = 0; g < G; ++g) col += table[size_t(g) * size_t(N) + size_t(i)];
        for (int g = 0; g < G; ++g) {
            const int64_t c = table[size_t(g) * size_t(N) + size_t(i)];
            if (c > 0) h -= double(c) / double(n) * std::log(double(c) / double(col));
        }
    }
    return std::max(h, 0.0);
}

}  // namespace moe
