// Shared by the CPU backend's files: Eigen views of row-major buffers and the piece sizes.
// Pieces depend only on the problem size, never on the thread count: each piece is computed
// serially, which keeps every result bit-identical at any number of threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>

namespace moe::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapMat = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using CMapMat = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

constexpr size_t kChunk = 1 << 14;  // elements per piece of an elementwise pass or reduction

// Elementwise math through Eigen's packet functions (exp, log, erf) with results that depend only
// on the values. Eigen computes packets and scalar tails with different approximations, and peels
// unaligned heads with the scalar one; so the values go kVecBlock at a time through 64-byte-aligned
// blocks, zero-padded to a multiple of kPacketMultiple (whole packets at AVX-512, AVX2 and SSE):
// every value takes the packet path, whatever the pointers, the lengths or the threads.
constexpr size_t kVecBlock = 256;
constexpr size_t kPacketMultiple = 16;
using VecBlock = Eigen::Map<Eigen::Array<float, kVecBlock, 1>, Eigen::Aligned64>;  // full
using VecTail = Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64>;                      // the rest

// y = f(v1, v2) over n values: v1 and v2 hold a block of x1 and of x2 (x2 may be null: v2 is then
// unused), and f, a generic lambda, leaves the result in v1. Full blocks are fixed-size (Eigen
// unrolls them: measurably faster for GELU), the last one dynamic. y may equal x1 or x2 (a block
// is read before it is written).
template <class F>
void blockwise(float* y, const float* x1, const float* x2, size_t n, F f) {
    alignas(64) float b1[kVecBlock], b2[kVecBlock];
    for (size_t b = 0; b < n; b += kVecBlock) {
        const size_t len = std::min(kVecBlock, n - b);
        const size_t padded = (len + kPacketMultiple - 1) / kPacketMultiple * kPacketMultiple;
        std::copy_n(x1 + b, len, b1);
        std::fill(b1 + len, b1 + padded, 0.0f);
        if (x2) {
            std::copy_n(x2 + b, len, b2);
            std::fill(b2 + len, b2 + padded, 0.0f);
        }
        if (len == kVecBlock) {
            VecBlock v1(b1), v2(b2);
            f(v1, v2);
        } else {
            VecTail v1(b1, Eigen::Index(padded)), v2(b2, x2 ? Eigen::Index(padded) : 0);
            f(v1, v2);
        }
        std::copy_n(b1, len, y + b);
    }
}

}  // namespace moe::cpu
