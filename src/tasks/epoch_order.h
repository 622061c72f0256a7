// The order in which a task reads its fixed training set of N examples: every epoch a fresh
// seeded permutation, so that the example at position q = step * batch_size + i of the stream is
// a pure function of (seed, q) — any step's batch without replaying the ones before it, the same
// at any thread count. The permutation of epoch q / N is a 6-round Feistel network on 2h bits
// (4^h >= N, h >= 1) keyed by (seed, kStreamShuffle, epoch), restricted to [0, N) by cycle
// walking.
#pragma once

#include <cstdint>

#include "backend/check.h"
#include "backend/rng.h"

namespace moe {

class EpochOrder {
public:
    EpochOrder() = default;
    EpochOrder(uint64_t seed, int64_t n) : seed_(seed), n_(n) {
        while ((uint64_t{1} << (2 * h_)) < static_cast<uint64_t>(n)) ++h_;
    }

    // The example read at position step * batch_size + i.
    int64_t index(int64_t step, int batch_size, int i) const {
        MOESIM_CHECK(n_ > 0, "an epoch order needs a fixed train set");
        const uint64_t N = static_cast<uint64_t>(n_);
        const uint64_t q = static_cast<uint64_t>(step) * static_cast<uint64_t>(batch_size) +
                           static_cast<uint64_t>(i);
        const uint64_t epoch = q / N;
        uint64_t v = q % N;
        const uint64_t mask = (uint64_t{1} << h_) - 1;
        const Rng r{seed_, kStreamShuffle, epoch};
        do {  // cycle walking: a permutation of [0, 4^h) restricted to [0, N)
            uint64_t left = v >> h_, right = v & mask;
            for (uint32_t round = 0; round < 6; ++round) {
                const uint64_t next = left ^ (r.bits(right, round) & mask);
                left = right;
                right = next;
            }
            v = (left << h_) | right;
        } while (v >= N);
        return static_cast<int64_t>(v);
    }

private:
    uint64_t seed_ = 0;
    int64_t n_ = 0;
    int h_ = 1;  // the permutation works on 2h bits
};

}  // namespace moe
