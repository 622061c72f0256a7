// The counter-based RNG: Philox known answers, determinism, key sensitivity, distributions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "backend/rng.h"

using namespace moe;

namespace {
constexpr int kDraws = 100000;

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
    const double n = static_cast<double>(a.size());
    double ma = 0, mb = 0;
    for (size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
    ma /= n, mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / std::sqrt(saa * sbb);
}
}  // namespace

TEST_SUITE("rng") {
    TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
        struct Kat {
            uint32_t ctr[4];
            uint32_t key[2];
            uint32_t out[4];
        };
        const Kat kats[] = {
            {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
            {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
             {0xffffffff, 0xffffffff},
             {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
            {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
             {0xa4093822, 0x299f31d0},
             {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
        };
        for (const Kat& k : kats) {
            uint32_t c[4] = {k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]};
            rng_detail::philox4x32_10(c, k.key[0], k.key[1]);
            for (int i = 0; i < 4; ++i) CHECK(c[i] == k.out[i]);
        }
    }

    TEST_CASE("the same key gives the same draws, whatever the order of the calls") {
        const Rng a{42, kStreamData, 7};
        const Rng b{42, kStreamData, 7};
        std::vector<uint64_t> forward, backward(1000);
        for (uint64_t i = 0; i < 1000; ++i) forward.push_back(a.bits(i, 3));
        for (uint64_t i = 1000; i-- > 0;) backward[i] = b.bits(i, 3);
        CHECK(forward == backward);
        CHECK(a.uniform(5, 1) == b.uniform(5, 1));
        CHECK(a.uniform_double(5, 1) == b.uniform_double(5, 1));
        CHECK(a.normal(5, 1) == b.normal(5, 1));
        CHECK(a.uniform_int(5, 1000, 1) == b.uniform_int(5, 1000, 1));
    }

    TEST_CASE("every part of the key changes the draw") {
        const Rng base{1, kStreamData, 0};
        const uint64_t v = base.bits(0, 0);
        CHECK(Rng{2, kStreamData, 0}.bits(0, 0) != v);
        CHECK(Rng{1, kStreamInit, 0}.bits(0, 0) != v);
        CHECK(Rng{1, kStreamData, 1}.bits(0, 0) != v);
        CHECK(base.bits(1, 0) != v);
        CHECK(base.bits(0, 1) != v);
        // Large values in the high words matter too.
        CHECK(Rng{1, kStreamData, uint64_t{1} << 40}.bits(0, 0) != v);
        CHECK(base.bits(uint64_t{1} << 40, 0) != v);
        CHECK(Rng{uint64_t{1} << 63, kStreamData, 0}.bits(0, 0) !=
              Rng{0, kStreamData, 0}.bits(0, 0));

        // No collisions among neighbouring keys in any coordinate.
        std::set<uint64_t> seen;
        int n = 0;
        for (uint64_t seed = 0; seed < 4; ++seed)
            for (uint64_t stream = 1; stream <= 4; ++stream)
                for (uint64_t step = 0; step < 8; ++step)
                    for (uint64_t index = 0; index < 16; ++index)
                        for (uint32_t lane = 0; lane < 4; ++lane, ++n)
                            seen.insert(Rng{seed, stream, step}.bits(index, lane));
        CHECK(static_cast<int>(seen.size()) == n);
    }

    TEST_CASE("every output bit is a fair coin") {
        const Rng r{3, kStreamNoise, 0};
        int ones[64] = {};
        for (int i = 0; i < kDraws; ++i) {
            const uint64_t b = r.bits(static_cast<uint64_t>(i));
            for (int k = 0; k < 64; ++k) ones[k] += static_cast<int>((b >> k) & 1u);
        }
        // sd of a fraction = 0.5 / sqrt(1e5) = 0.0016; allow 5 sd.
        for (int k = 0; k < 64; ++k) CHECK(std::abs(ones[k] / double(kDraws) - 0.5) < 0.008);
    }

    TEST_CASE("uniform: range, mean and variance") {
        const Rng r{11, kStreamData, 3};
        double sum = 0, sum2 = 0, dsum = 0, dsum2 = 0;
        float lo = 1, hi = 0;
        double dlo = 1, dhi = 0;
        for (int i = 0; i < kDraws; ++i) {
            const float u = r.uniform(static_cast<uint64_t>(i));
            const double d = r.uniform_double(static_cast<uint64_t>(i), 1);
            lo = std::min(lo, u), hi = std::max(hi, u);
            dlo = std::min(dlo, d), dhi = std::max(dhi, d);
            sum += u, sum2 += double(u) * u;
            dsum += d, dsum2 += d * d;
        }
        CHECK(lo >= 0.0f);
        CHECK(hi < 1.0f);
        CHECK(dlo > 0.0);
        CHECK(dhi < 1.0);
        const double mean = sum / kDraws, var = sum2 / kDraws - mean * mean;
        const double dmean = dsum / kDraws, dvar = dsum2 / kDraws - dmean * dmean;
        // sd of the mean = 0.289 / 316 = 0.0009; of the variance = 0.0745 / 316 = 0.00024.
        CHECK(std::abs(mean - 0.5) < 0.005);
        CHECK(std::abs(var - 1.0 / 12) < 0.0015);
        CHECK(std::abs(dmean - 0.5) < 0.005);
        CHECK(std::abs(dvar - 1.0 / 12) < 0.0015);
        // The extreme values of the open interval are still safe for log.
        CHECK(std::isfinite(std::log(Rng{0, 0, 0}.uniform_double(0))));
    }

    TEST_CASE("uniform_int covers 0..n-1 evenly") {
        const Rng r{5, kStreamShuffle, 0};
        constexpr int n = 10;
        int counts[n] = {};
        int out_of_range = 0;
        for (int i = 0; i < kDraws; ++i) {
            const uint64_t v = r.uniform_int(static_cast<uint64_t>(i), n);
            if (v < uint64_t{n})
                ++counts[v];
            else
                ++out_of_range;
        }
        REQUIRE(out_of_range == 0);
        double chi2 = 0;
        for (int c : counts) chi2 += (c - kDraws / n) * double(c - kDraws / n) / (kDraws / n);
        CHECK(chi2 < 35.0);  // 9 degrees of freedom: P(chi2 > 35) ~ 6e-5
        CHECK(r.uniform_int(0, 1) == 0);
    }

    TEST_CASE("bernoulli hits its probability") {
        const Rng r{8, kStreamData, 0};
        int hits = 0;
        for (int i = 0; i < kDraws; ++i) hits += r.bernoulli(static_cast<uint64_t>(i), 0.3) ? 1 : 0;
        CHECK(std::abs(hits / double(kDraws) - 0.3) < 0.01);
        CHECK_FALSE(r.bernoulli(0, 0.0));
        CHECK(r.bernoulli(0, 1.0));
    }

    TEST_CASE("normal: mean, standard deviation and tails") {
        const Rng r{13, kStreamInit, 0};
        double sum = 0, sum2 = 0, sum4 = 0;
        int beyond1 = 0, beyond2 = 0, beyond3 = 0, negative = 0, nonfinite = 0;
        for (int i = 0; i < kDraws; ++i) {
            const double z = r.normal(static_cast<uint64_t>(i), 2);
            nonfinite += !std::isfinite(z);
            sum += z, sum2 += z * z, sum4 += z * z * z * z;
            beyond1 += std::abs(z) > 1, beyond2 += std::abs(z) > 2, beyond3 += std::abs(z) > 3;
            negative += z < 0;
        }
        REQUIRE(nonfinite == 0);
        const double mean = sum / kDraws, sd = std::sqrt(sum2 / kDraws - mean * mean);
        CHECK(std::abs(mean) < 0.016);               // 5 sd of the mean
        CHECK(std::abs(sd - 1.0) < 0.012);           // 5 sd of the sample sd
        CHECK(std::abs(sum4 / kDraws - 3.0) < 0.1);  // kurtosis of a normal
        CHECK(std::abs(beyond1 / double(kDraws) - 0.31731) < 0.0075);
        CHECK(std::abs(beyond2 / double(kDraws) - 0.04550) < 0.0033);
        CHECK(std::abs(beyond3 / double(kDraws) - 0.00270) < 0.0009);
        CHECK(std::abs(negative / double(kDraws) - 0.5) < 0.008);
    }

    TEST_CASE("normal2: two independent standard normals, the first one normal()") {
        const Rng r{17, kStreamData, 2};
        std::vector<double> first, second;
        int mismatched = 0;
        for (int i = 0; i < kDraws; ++i) {
            const NormalPair p = r.normal2(static_cast<uint64_t>(i), 1);
            mismatched += p.first != r.normal_double(static_cast<uint64_t>(i), 1);
            first.push_back(p.first);
            second.push_back(p.second);
        }
        CHECK(mismatched == 0);
        double sum = 0, sum2 = 0;
        int beyond2 = 0;
        for (double z : second) sum += z, sum2 += z * z, beyond2 += std::abs(z) > 2;
        const double mean = sum / kDraws, sd = std::sqrt(sum2 / kDraws - mean * mean);
        CHECK(std::abs(mean) < 0.016);
        CHECK(std::abs(sd - 1.0) < 0.012);
        CHECK(std::abs(beyond2 / double(kDraws) - 0.04550) < 0.0033);
        CHECK(std::abs(correlation(first, second)) < 0.016);
        for (auto& v : first) v *= v;
        for (auto& v : second) v *= v;
        CHECK(std::abs(correlation(first, second)) < 0.016);
    }

    TEST_CASE("no correlation between lanes, neighbouring indices or neighbouring steps") {
        const Rng r{21, kStreamData, 0}, next_step{21, kStreamData, 1};
        std::vector<double> lane0, lane1, idx_next, step_next, n0, n1;
        for (int i = 0; i < kDraws; ++i) {
            const auto u = static_cast<uint64_t>(i);
            lane0.push_back(r.uniform(u, 0));
            lane1.push_back(r.uniform(u, 1));
            idx_next.push_back(r.uniform(u + 1, 0));
            step_next.push_back(next_step.uniform(u, 0));
            n0.push_back(r.normal(u, 4));
            n1.push_back(r.normal(u, 5));
        }
        // sd of a correlation of independent samples = 1 / sqrt(1e5) = 0.0032; allow 5 sd.
        CHECK(std::abs(correlation(lane0, lane1)) < 0.016);
        CHECK(std::abs(correlation(lane0, idx_next)) < 0.016);
        CHECK(std::abs(correlation(lane0, step_next)) < 0.016);
        CHECK(std::abs(correlation(n0, n1)) < 0.016);
        // Squares too: a dependence in magnitude would show here.
        for (auto& v : n0) v *= v;
        for (auto& v : n1) v *= v;
        CHECK(std::abs(correlation(n0, n1)) < 0.016);
    }

}  // TEST_SUITE("rng")
