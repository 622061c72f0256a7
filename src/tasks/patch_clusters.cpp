// The `patch_clusters` task: Chen et al. 2022, Definition 3.1 (K = num_clusters, P = patches,
// d = dim; all draws from the counter-based Rng of backend/rng.h, keyed (seed, stream, step,
// index, lane)).
//
// Hidden vectors, once, from stream kStreamTask, step 1: 2K Gaussian draws g_r[j] ~ N(0, 1)
// (index r * d + j) orthonormalised in order by Gram-Schmidt (applied twice, in double): rows
// 0..K-1 are the features v_1..v_K, rows K..2K-1 the cluster centres c_1..c_K. So v's and c's are
// mutually orthonormal (needs 2K <= d, a config rule).
//
// Example number e of a data stream (train: kStreamData, eval: kStreamEval; step 0), with its cell
// (k, class) given (fixed sets, below) or drawn (lane 0: cell = uniform of 2K, fresh stream):
//   k = cell / 2, class = cell % 2, y = +1 for class 0 and -1 for class 1
//   lane 1: k' = (k + 1 + uniform of K-1) mod K           (uniform over the other clusters)
//   lane 2: eps = +1 or -1, each with probability 1/2
//   lane 3, 4, 5: alpha ~ U(0.5, 2), beta ~ U(1, 2), gamma ~ U(0.5, gamma_max)
//   lanes 6 .. 6+P-1: the patch order, a Fisher-Yates shuffle of the roles 0..P-1 (position p
//     swaps with uniform of p+1 at lane 6 + p, p = P-1 down to 1)
//   lanes 6+P+m: Box-Muller pairs for the Gaussian patches, in order of role then coordinate
//   the patch at a position of role 0 is y alpha v_k, role 1 beta c_k, role 2 eps gamma v_k', a
//   role >= 3 sigma_p / sqrt(d) * N(0, I); every value is multiplied by `scale`, rounded to float.
//   group = k.
//
// Fixed sets (the eval set: eval_size examples of kStreamEval; the train set: train_size of
// kStreamData) are balanced: example e's cell is the e-th of the sequence 0, 1, .., 2K-1, 0, 1, ..
// shuffled by a seeded Fisher-Yates (Rng{seed, stream, 2}), so every (cluster, label) pair holds
// floor(n / 2K) or that plus one examples (exactly n / 2K when 2K divides n): the K clusters, the
// two labels and the labels within each cluster come in equal counts. k', eps and the amplitudes
// are independent uniform draws, not balanced. The fresh stream (train_size = 0) draws cells
// independently (balanced only in expectation).
//
// Training batches, as for `clusters`: with a fixed train set, epochs of a Feistel permutation
// (Rng{seed, kStreamShuffle, epoch}), so every example once per epoch and the batch of any step is
// a pure function of the step; with train_size = 0 the batch of step s is examples s*B .. s*B+B-1
// of the fresh stream. Each example depends on its index only (and its cell), so the sets come out
// identical at any thread count.
#include "tasks/patch_clusters.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "backend/check.h"
#include "backend/rng.h"
#include "tasks/setup_interrupt.h"

namespace moe {

namespace {

constexpr uint32_t kLaneCell = 0, kLaneOther = 1, kLaneEps = 2, kLaneAlpha = 3, kLaneBeta = 4,
                   kLaneGamma = 5, kLaneOrder = 6;
constexpr uint64_t kParamBasis = 1;
constexpr uint64_t kStepCells = 2;

double uniform_between(const Rng& r, uint64_t index, uint32_t lane, double lo, double hi) {
    return lo + (hi - lo) * r.uniform_double(index, lane);
}

}  // namespace

PatchClustersTask::PatchClustersTask(const PatchClustersConfig& pc, int64_t train_size,
                                     int64_t eval_size, uint64_t seed)
    : pc_(pc), train_size_(train_size), seed_(seed) {
    MOESIM_CHECK(pc.num_clusters >= 2 && pc.patches >= 3 && 2 * pc.num_clusters <= pc.dim,
                 "patch_clusters sizes (config rules)");
    MOESIM_CHECK(train_size >= 0 && eval_size >= 0 && train_size <= INT_MAX && eval_size <= INT_MAX,
                 "data.train_size and data.eval_size within the schema's range");
    const int K = pc_.num_clusters, D = pc_.dim;

    const Rng g{seed_, kStreamTask, kParamBasis};
    basis_.resize(static_cast<size_t>(2 * K) * D);
    for (int r = 0; r < 2 * K; ++r) {
        double* b = basis_.data() + static_cast<size_t>(r) * D;
        for (int j = 0; j < D; ++j) b[j] = g.normal_double(static_cast<uint64_t>(r) * D + j);
        for (int pass = 0; pass < 2; ++pass)
            for (int q = 0; q < r; ++q) {
                const double* a = basis_.data() + static_cast<size_t>(q) * D;
                double dot = 0.0;
                for (int j = 0; j < D; ++j) dot += a[j] * b[j];
                for (int j = 0; j < D; ++j) b[j] -= dot * a[j];
            }
        double norm = 0.0;
        for (int j = 0; j < D; ++j) norm += b[j] * b[j];
        norm = std::sqrt(norm);
        MOESIM_CHECK(norm > 1e-8, "Gaussian draws are linearly independent");
        for (int j = 0; j < D; ++j) b[j] /= norm;
    }

    order_ = EpochOrder(seed_, train_size_);

    if (train_size_ > 0)
        generate_set(kStreamData, static_cast<int>(train_size_), train_cells_, train_);
    generate_set(kStreamEval, static_cast<int>(eval_size), eval_cells_, eval_);
}

void PatchClustersTask::generate_set(uint64_t stream, int n, std::vector<uint16_t>& cells,
                                     Batch& out) const {
    const int C = 2 * pc_.num_clusters;
    cells.resize(static_cast<size_t>(n));
    for (int e = 0; e < n; ++e) cells[static_cast<size_t>(e)] = static_cast<uint16_t>(e % C);
    const Rng r{seed_, stream, kStepCells};
    for (int i = n - 1; i > 0; --i) {
        const auto j = static_cast<size_t>(
            r.uniform_int(static_cast<uint64_t>(i), static_cast<uint64_t>(i) + 1));
        std::swap(cells[static_cast<size_t>(i)], cells[j]);
    }
    out.resize(n, input_dim());
    constexpr int kChunk = 16384;  // examples between two checks of the stop flag
    for (int first = 0; first < n; first += kChunk) {
        throw_if_setup_stopped();
        const int len = std::min(kChunk, n - first);
#pragma omp parallel for schedule(static)
        for (int i = first; i < first + len; ++i)
            generate(stream, static_cast<uint64_t>(i), cells[static_cast<size_t>(i)], out, i);
    }
}

PatchClustersTask::Example PatchClustersTask::draw(uint64_t stream, uint64_t index,
                                                   int cell) const {
    const int K = pc_.num_clusters, P = pc_.patches;
    const Rng r{seed_, stream, 0};
    if (cell < 0)
        cell = static_cast<int>(r.uniform_int(index, 2 * static_cast<uint64_t>(K), kLaneCell));
    Example ex;
    ex.cluster = cell / 2;
    ex.label = cell % 2;
    ex.other = static_cast<int>((static_cast<uint64_t>(ex.cluster) + 1 +
                                 r.uniform_int(index, static_cast<uint64_t>(K) - 1, kLaneOther)) %
                                static_cast<uint64_t>(K));
    ex.eps = (r.bits(index, kLaneEps) & 1u) ? 1 : -1;
    ex.alpha = uniform_between(r, index, kLaneAlpha, 0.5, 2.0);
    ex.beta = uniform_between(r, index, kLaneBeta, 1.0, 2.0);
    ex.gamma = uniform_between(r, index, kLaneGamma, 0.5, pc_.gamma_max);
    ex.role.resize(static_cast<size_t>(P));
    for (int p = 0; p < P; ++p) ex.role[static_cast<size_t>(p)] = p;
    for (int p = P - 1; p > 0; --p) {
        const auto j = static_cast<size_t>(r.uniform_int(index, static_cast<uint64_t>(p) + 1,
                                                         kLaneOrder + static_cast<uint32_t>(p)));
        std::swap(ex.role[static_cast<size_t>(p)], ex.role[j]);
    }
    return ex;
}

void PatchClustersTask::generate(uint64_t stream, uint64_t index, int cell, Batch& out,
                                 int row) const {
    const int P = pc_.patches, D = pc_.dim;
    const Example ex = draw(stream, index, cell);
    const Rng r{seed_, stream, 0};
    const double scale = pc_.scale, noise_std = pc_.sigma_p / std::sqrt(static_cast<double>(D));
    float* x = out.x.data() + static_cast<size_t>(row) * static_cast<size_t>(P) * D;
    for (int p = 0; p < P; ++p) {
        const int role = ex.role[static_cast<size_t>(p)];
        float* patch = x + static_cast<size_t>(p) * D;
        if (role >= kNoise) {
            const uint32_t lane0 = kLaneOrder + static_cast<uint32_t>(P) +
                                   static_cast<uint32_t>((role - kNoise) * ((D + 1) / 2));
            for (int j = 0; j < D; j += 2) {
                const NormalPair n = r.normal2(index, lane0 + static_cast<uint32_t>(j / 2));
                patch[j] = static_cast<float>(scale * (noise_std * n.first));
                if (j + 1 < D) patch[j + 1] = static_cast<float>(scale * (noise_std * n.second));
            }
            continue;
        }
        const double amp = role == kSignal   ? ex.y() * ex.alpha
                           : role == kCentre ? ex.beta
                                             : ex.eps * ex.gamma;
        const double* v = role == kSignal   ? feature(ex.cluster)
                          : role == kCentre ? centre(ex.cluster)
                                            : feature(ex.other);
        for (int j = 0; j < D; ++j) patch[j] = static_cast<float>(scale * (amp * v[j]));
    }
    out.y[static_cast<size_t>(row)] = ex.label;
    out.group[static_cast<size_t>(row)] = ex.cluster;
}

PatchClustersTask::Example PatchClustersTask::eval_example(int64_t e) const {
    MOESIM_CHECK(e >= 0 && e < eval_.B, "an eval example");
    return draw(kStreamEval, static_cast<uint64_t>(e), eval_cells_[static_cast<size_t>(e)]);
}

PatchClustersTask::Example PatchClustersTask::train_example(int64_t e) const {
    MOESIM_CHECK(e >= 0 && (train_size_ == 0 || e < train_size_), "a train example");
    return draw(kStreamData, static_cast<uint64_t>(e),
                train_size_ > 0 ? train_cells_[static_cast<size_t>(e)] : -1);
}

int64_t PatchClustersTask::train_index(int64_t step, int batch_size, int i) const {
    return order_.index(step, batch_size, i);
}

void PatchClustersTask::train_batch(int64_t step, int batch_size, Batch& out) const {
    MOESIM_CHECK(step >= 0 && batch_size >= 0, "step and batch size are not negative");
    const int W = input_dim();
    out.resize(batch_size, W);
    const bool fresh = train_size_ == 0;
    const uint64_t first = static_cast<uint64_t>(step) * static_cast<uint64_t>(batch_size);
#pragma omp parallel for schedule(static) if (static_cast <int64_t>(batch_size) * W >= 32768)
    for (int i = 0; i < batch_size; ++i) {
        if (fresh) {
            generate(kStreamData, first + static_cast<uint64_t>(i), -1, out, i);
            continue;
        }
        const int64_t e = train_index(step, batch_size, i);
        std::memcpy(out.x.data() + static_cast<size_t>(i) * W, train_.row(static_cast<int>(e)),
                    sizeof(float) * static_cast<size_t>(W));
        out.y[static_cast<size_t>(i)] = train_.y[static_cast<size_t>(e)];
        out.group[static_cast<size_t>(i)] = train_.group[static_cast<size_t>(e)];
    }
}

}  // namespace moe
