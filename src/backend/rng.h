// Counter-based random numbers (DESIGN.md: "randomness comes from a counter-based generator keyed by
// (seed, stream, step, index), so results do not depend on thread count or device").
//
// There is no generator state to advance: every draw is a pure function of its key
//     (seed, stream, step, index, lane)  ->  128 random bits
// so a draw can be made by any thread, in any order, on any device, and always gives the same value.
//
// How a key becomes bits:
//   * the 64-bit Philox key is a hash of (seed, stream, lane): three rounds of the splitmix64
//     finaliser, chained (rng_key below);
//   * the 128-bit Philox counter is (index, step): words {index lo, index hi, step lo, step hi};
//   * one Philox4x32-10 block (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
//     SC 2011; the Random123 constants, checked against its known-answer vectors in
//     tests/backend/test_rng.cpp) gives 4 x 32 bits: word0..1 -> `lo`, word2..3 -> `hi`.
//
// The draws of one (index, lane) all read that one block:
//   bits()           = lo
//   uniform()        = top 24 bits of lo / 2^24                       in [0, 1)
//   uniform_double() = (top 53 bits of lo + 0.5) / 2^53               in (0, 1), safe for log()
//   uniform_int(n)   = floor(lo * n / 2^64)                           in [0, n)
//   normal()         = Box-Muller: sqrt(-2 ln u1) * cos(2 pi u2), u1 from lo (open), u2 from hi
//   normal2()        = that value and its independent twin sqrt(-2 ln u1) * sin(2 pi u2)
// so uniform(i, l) and normal(i, l) are NOT independent of each other: a caller that needs both for
// the same index takes them from different lanes. Different lanes, indices, steps, streams or seeds
// are independent for every practical purpose.
//
// Convention: `step` is the training step (or 0 for things drawn once, such as a fixed data set),
// `index` the item (example, token, parameter), `lane` the sub-draw of that item (a coordinate, the
// second coin of an example). The same header compiles in CUDA device code (MOE_RNG_HD), where the
// integer part is bit-identical; normal() goes through the device's log/cos/sqrt and may differ from
// the CPU in the last bits.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MOE_RNG_HD __host__ __device__ __forceinline__
#else
#define MOE_RNG_HD inline
#endif

namespace moe {

// One stream per independent consumer of randomness, so that e.g. changing the model's width (and
// with it the number of init draws) never changes the data. Values are part of the reproducibility
// contract: never renumber, only append.
enum Stream : uint64_t {
    kStreamData = 1,     // training examples (tasks/): fixed train set at step 0, or fresh examples
    kStreamInit = 2,     // parameter initialisation (model/)
    kStreamNoise = 3,    // router noise: noisy top-k gating (routing/)
    kStreamEval = 4,     // the held-out evaluation set (tasks/)
    kStreamShuffle = 5,  // which training examples form the batch of a step (tasks/)
    kStreamTask =
        6,  // a task's fixed hidden parameters: cluster centres, teachers, chains (tasks/)
    kStreamRouting =
        7,  // routers that choose at random: random / hash routing, tie breaks (routing/)
    kStreamDropout = 8,  // dropout masks, token dropping at random (model/)

    // GShard's random dispatch of the 2nd expert (routing/routers/topk.cpp)
    kStreamSecondExpert = 9,
    // capacity.drop_policy: random, which assignments an over-full expert keeps (routing/)
    kStreamCapacityDrop = 10,
    // router.jitter: the multiplicative jitter of the router's input (model/layers/router_head)
    kStreamRouterJitter = 11,
};

struct RngBlock {
    uint64_t lo = 0, hi = 0;
};
struct NormalPair {
    double first = 0, second = 0;
};

namespace rng_detail {

MOE_RNG_HD uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Philox4x32-10 on counter c[4] with key (k0, k1); the result replaces c.
MOE_RNG_HD void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
    constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += kW0;
            k1 += kW1;
        }
        const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
        const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0;
        const uint32_t n1 = static_cast<uint32_t>(p1);
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1;
        const uint32_t n3 = static_cast<uint32_t>(p0);
        c[0] = n0;
        c[1] = n1;
        c[2] = n2;
        c[3] = n3;
    }
}

MOE_RNG_HD uint64_t mulhi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
    return __umul64hi(a, b);
#else
    __extension__ typedef unsigned __int128 u128;
    return static_cast<uint64_t>((static_cast<u128>(a) * b) >> 64);
#endif
}

}  // namespace rng_detail

// The Philox key of (seed, stream, lane).
MOE_RNG_HD uint64_t rng_key(uint64_t seed, uint64_t stream, uint32_t lane) {
    uint64_t h = rng_detail::splitmix64(seed);
    h = rng_detail::splitmix64(h ^ (stream * 0xD6E8FEB86659FD93ull));
    h = rng_detail::splitmix64(h ^ (static_cast<uint64_t>(lane) * 0xA0761D6478BD642Full));
    return h;
}

struct Rng {
    uint64_t seed = 0, stream = 0, step = 0;

    // The 128-bit block every draw of (index, lane) reads.
    MOE_RNG_HD RngBlock block(uint64_t index, uint32_t lane = 0) const {
        const uint64_t key = rng_key(seed, stream, lane);
        uint32_t c[4] = {static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                         static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)};
        rng_detail::philox4x32_10(c, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
        RngBlock b;
        b.lo = static_cast<uint64_t>(c[0]) | (static_cast<uint64_t>(c[1]) << 32);
        b.hi = static_cast<uint64_t>(c[2]) | (static_cast<uint64_t>(c[3]) << 32);
        return b;
    }

    // 64 random bits.
    MOE_RNG_HD uint64_t bits(uint64_t index, uint32_t lane = 0) const {
        return block(index, lane).lo;
    }

    // Uniform in [0, 1) with a 24-bit mantissa (every value exactly representable as a float).
    MOE_RNG_HD float uniform(uint64_t index, uint32_t lane = 0) const {
        return static_cast<float>(bits(index, lane) >> 40) * 0x1.0p-24f;
    }

    // Uniform in the open interval (0, 1): 53 random bits, offset by half a step; log() is safe.
    MOE_RNG_HD double uniform_double(uint64_t index, uint32_t lane = 0) const {
        return (static_cast<double>(bits(index, lane) >> 11) + 0.5) * 0x1.0p-53;
    }

    // Uniform integer in [0, n) (n > 0), by multiply-high; bias below n / 2^64.
    MOE_RNG_HD uint64_t uniform_int(uint64_t index, uint64_t n, uint32_t lane = 0) const {
        return rng_detail::mulhi64(bits(index, lane), n);
    }

    // True with probability p.
    MOE_RNG_HD bool bernoulli(uint64_t index, double p, uint32_t lane = 0) const {
        return uniform_double(index, lane) < p;
    }

    // Two independent standard normals by Box-Muller on the two halves of the block:
    // sqrt(-2 ln u1) * (cos, sin)(2 pi u2). |value| < 8.7.
    MOE_RNG_HD NormalPair normal2(uint64_t index, uint32_t lane = 0) const {
        const RngBlock b = block(index, lane);
        const double u1 = (static_cast<double>(b.lo >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
        const double u2 = static_cast<double>(b.hi >> 11) * 0x1.0p-53;          // [0, 1)
        constexpr double kTwoPi = 6.283185307179586476925286766559;
        const double r = ::sqrt(-2.0 * ::log(u1));
        return NormalPair{r * ::cos(kTwoPi * u2), r * ::sin(kTwoPi * u2)};
    }
    // One standard normal: the first of normal2(index, lane).
    MOE_RNG_HD double normal_double(uint64_t index, uint32_t lane = 0) const {
        const RngBlock b = block(index, lane);
        const double u1 = (static_cast<double>(b.lo >> 11) + 0.5) * 0x1.0p-53;
        const double u2 = static_cast<double>(b.hi >> 11) * 0x1.0p-53;
        constexpr double kTwoPi = 6.283185307179586476925286766559;
        return ::sqrt(-2.0 * ::log(u1)) * ::cos(kTwoPi * u2);
    }
    MOE_RNG_HD float normal(uint64_t index, uint32_t lane = 0) const {
        return static_cast<float>(normal_double(index, lane));
    }
};

}  // namespace moe
