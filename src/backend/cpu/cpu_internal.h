// Shared by the CPU backend's files: Eigen views of row-major buffers and the piece sizes.
// Pieces depend only on the problem size, never on the thread count: each piece is computed
// serially, which keeps every result bit-identical at any number of threads.
#pragma once

#include <Eigen/Core>
#include <cstddef>

namespace moe::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapMat = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using CMapMat = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

constexpr size_t kChunk = 1 << 14;   // elements per piece of an elementwise pass or reduction

}  // namespace moe::cpu
