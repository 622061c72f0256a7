// The `clusters` task: a Gaussian mixture, each cluster labelled by its own random teacher.
//
// Exactly how the data is generated (C = num_clusters, K = num_classes, D = dim, H = 32, all draws
// from the counter-based Rng of backend/rng.h, keyed (seed, stream, step, index, lane)):
//
// Hidden parameters, once, from stream kStreamTask; the index of cluster c's draws is (c << 32 | i),
// so a cluster's centre and teacher do not change when num_clusters changes:
//   * cluster frequencies  p(c) = (c + 1)^-imbalance / sum_c' (c' + 1)^-imbalance   (imbalance 0 =
//     uniform; cluster 0 is the most frequent, so a group id is also its frequency rank);
//   * centres              mu_c[j] ~ N(0, 1)                                     (step 1, i = j)
//   * teacher of cluster c, a function of the example's standardised offset z = (x - mu_c) / spread:
//       linear:  logits = W z + b,                   W[k][j] ~ N(0, 1/D)          (step 4)
//       mlp:     logits = W tanh(V z + a) + b,       V[h][j] ~ N(0, 1.5^2/D)      (step 2)
//                                                    a[h]    ~ N(0, 0.5^2)        (step 3)
//                                                    W[k][h] ~ N(0, 1/H)          (step 4)
//       label = argmax_k logits (lowest k on a tie).
//     The bias b is calibrated so that the teacher's classes are balanced on the cluster's own
//     distribution: on 4096 draws z ~ N(0, I) (step 5, i = sample, lane m gives the normal2 pair
//     z[2m], z[2m+1]) each b[k] in turn is set so that exactly 1/K of the sample falls in class k
//     (coordinate ascent on the dual of the balanced assignment, up to 40 sweeps, until every class
//     holds 1/K +- 1% of the sample).
//     Without it one class would swallow most of a cluster and the task would be trivial.
//
// Example number e of a data stream (train: kStreamData, eval: kStreamEval; step 0), lanes:
//   lane 0:      u ~ U(0,1); cluster c = the first c with u < cdf(c)      (inverse CDF of p)
//   lane 3 + m:  (z[2m], z[2m+1]) = Rng::normal2 (a Box-Muller pair);  x[j] = float(mu_c[j] + spread * z[j])
//   y = teacher_c(z)
//   lane 1, 2:   with probability label_noise (lane 1) y is replaced by a uniform class (lane 2),
//                which may equal the clean label
//   group = c
// Each example depends on its index only, so the sets are generated in parallel with OpenMP and come
// out identical for any thread count. The eval set is examples 0..eval_size-1 of kStreamEval, so it
// is disjoint in randomness from the training data.
//
// Training batches:
//   * train_size = N > 0: the fixed train set is examples 0..N-1 of kStreamData. Batches walk through
//     epochs of random permutations: the i-th example of the batch of step s is at global position
//     q = s * batch_size + i, in epoch q / N, at place q % N of that epoch's permutation; the
//     permutation is a 6-round Feistel network over 2h bits (the smallest 4^h >= N) with round
//     function Rng{seed, kStreamShuffle, epoch}.bits(right half, round), cycle-walked into [0, N).
//     So every example is seen exactly once per epoch, in a fresh order each epoch, and the batch of
//     any step is computed directly (no state, resumable).
//   * train_size = 0: fresh examples, the batch of step s is examples s*B .. s*B + B-1 of kStreamData
//     (a never-ending train set read in order; its first N examples are the fixed set's).
#include "tasks/clusters.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "backend/check.h"
#include "backend/rng.h"
#include "tasks/setup_interrupt.h"

namespace moe {

namespace {

constexpr uint32_t kLaneCluster = 0;
constexpr uint32_t kLaneNoiseCoin = 1;
constexpr uint32_t kLaneNoiseClass = 2;
constexpr uint32_t kLaneCoord0 = 3;

constexpr uint64_t kParamCentres = 1, kParamHiddenW = 2, kParamHiddenB = 3, kParamOutW = 4,
                   kParamCalibration = 5;

constexpr double kHiddenGain = 1.5;
constexpr double kHiddenBiasStd = 0.5;
constexpr int kCalibrationSweeps = 40;

uint64_t param_index(int c, int64_t i) {
    return (static_cast<uint64_t>(c) << 32) | static_cast<uint64_t>(i);
}

// Per-thread scratch that only grows: no allocation in the steady state.
double* scratch(size_t n) {
    static thread_local std::vector<double> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

}  // namespace

ClustersTask::ClustersTask(const ClustersConfig& cc, int64_t train_size, int64_t eval_size,
                           uint64_t seed)
    : cc_(cc), train_size_(train_size), seed_(seed) {
    // config/ validates these; the buffers below are sized from them (the sets with int rows).
    MOESIM_CHECK(cc.dim > 0 && cc.num_clusters > 0 && cc.num_classes > 0, "clusters sizes");
    MOESIM_CHECK(train_size >= 0 && eval_size >= 0 && train_size <= INT_MAX && eval_size <= INT_MAX,
                 "data.train_size and data.eval_size within the schema's range");
    const int C = cc_.num_clusters, D = cc_.dim, K = cc_.num_classes, H = kTeacherHidden;

    prob_.resize(static_cast<size_t>(C));
    cdf_.resize(static_cast<size_t>(C));
    double total = 0.0;
    for (int c = 0; c < C; ++c)
        total += prob_[static_cast<size_t>(c)] = std::pow(c + 1.0, -cc_.imbalance);
    double acc = 0.0;
    for (int c = 0; c < C; ++c) {
        prob_[static_cast<size_t>(c)] /= total;
        acc += prob_[static_cast<size_t>(c)];
        cdf_[static_cast<size_t>(c)] = acc;
    }
    cdf_.back() = 1.0;

    // Setup checks setup_stop_requested() once per cluster and once per chunk of examples (a few
    // milliseconds of work at most) and throws SetupInterrupted (tasks/setup_interrupt.h).
    const Rng centres_rng{seed_, kStreamTask, kParamCentres};
    centres_.resize(static_cast<size_t>(C) * static_cast<size_t>(D));
    for (int c = 0; c < C; ++c) {
        if (c % 256 == 0) throw_if_setup_stopped();
        for (int j = 0; j < D; ++j)
            centres_[static_cast<size_t>(c) * D + j] = centres_rng.normal_double(param_index(c, j));
    }

    const bool mlp = cc_.teacher == moe::Teacher::mlp;
    const int in = teacher_in();
    teachers_.resize(static_cast<size_t>(C));
    for (int c = 0; c < C; ++c) {
        throw_if_setup_stopped();
        TeacherNet& t = teachers_[static_cast<size_t>(c)];
        if (mlp) {
            const Rng wr{seed_, kStreamTask, kParamHiddenW}, br{seed_, kStreamTask, kParamHiddenB};
            t.w1.resize(static_cast<size_t>(H) * D);
            t.b1.resize(static_cast<size_t>(H));
            for (int h = 0; h < H; ++h) {
                for (int j = 0; j < D; ++j)
                    t.w1[static_cast<size_t>(h) * D + j] =
                        wr.normal_double(param_index(c, int64_t{h} * D + j)) * kHiddenGain /
                        std::sqrt(D);
                t.b1[static_cast<size_t>(h)] = br.normal_double(param_index(c, h)) * kHiddenBiasStd;
            }
        }
        const Rng ow{seed_, kStreamTask, kParamOutW};
        t.w2.resize(static_cast<size_t>(K) * in);
        t.b2.assign(static_cast<size_t>(K), 0.0);
        for (int k = 0; k < K; ++k)
            for (int j = 0; j < in; ++j)
                t.w2[static_cast<size_t>(k) * in + j] =
                    ow.normal_double(param_index(c, int64_t{k} * in + j)) / std::sqrt(in);
    }
    // No exception may leave an OpenMP region: a stop skips the clusters left, then throws.
#pragma omp parallel for schedule(dynamic, 1)
    for (int c = 0; c < C; ++c)
        if (!setup_stop_requested()) calibrate(c);
    throw_if_setup_stopped();

    order_ = EpochOrder(seed_, train_size_);

    if (train_size_ > 0) {
        train_.resize(static_cast<int>(train_size_), D);
        generate_setup(kStreamData, static_cast<int>(train_size_), train_);
    }
    eval_.resize(static_cast<int>(eval_size), D);
    generate_setup(kStreamEval, static_cast<int>(eval_size), eval_);
}

void ClustersTask::generate_setup(uint64_t stream, int n, Batch& out) const {
    constexpr int kChunk = 16384;  // examples between two checks of the stop flag
    for (int first = 0; first < n; first += kChunk) {
        throw_if_setup_stopped();
        const int len = std::min(kChunk, n - first);
        generate_range(stream, static_cast<uint64_t>(first), len, out, first);
    }
}

int ClustersTask::teacher_in() const {
    return cc_.teacher == moe::Teacher::mlp ? kTeacherHidden : cc_.dim;
}

void ClustersTask::teacher_logits(int c, const double* z, double* hidden, double* logits) const {
    const TeacherNet& t = teachers_[static_cast<size_t>(c)];
    const int D = cc_.dim, K = cc_.num_classes, in = teacher_in();
    const double* v = z;
    if (cc_.teacher == moe::Teacher::mlp) {
        for (int h = 0; h < kTeacherHidden; ++h) {
            const double* w = t.w1.data() + static_cast<size_t>(h) * D;
            double s = t.b1[static_cast<size_t>(h)];
            for (int j = 0; j < D; ++j) s += w[j] * z[j];
            hidden[h] = 1.0 - 2.0 / (std::exp(2.0 * s) + 1.0);  // tanh(s), a few times faster
        }
        v = hidden;
    }
    for (int k = 0; k < K; ++k) {
        const double* w = t.w2.data() + static_cast<size_t>(k) * in;
        double s = t.b2[static_cast<size_t>(k)];
        for (int j = 0; j < in; ++j) s += w[j] * v[j];
        logits[k] = s;
    }
}

int ClustersTask::teacher_label(int c, const double* z) const {
    const int K = cc_.num_classes;
    double* work = scratch(static_cast<size_t>(kTeacherHidden + K));
    double* logits = work + kTeacherHidden;
    teacher_logits(c, z, work, logits);
    return static_cast<int>(std::max_element(logits, logits + K) - logits);
}

// Sets teachers_[c].b2 so that the classes are balanced on a sample of the cluster's own z ~ N(0, I).
// Class k wins sample s iff b[k] > m[s] = max_{j != k} (L[s][j] + b[j]) - L[s][k]; setting b[k] just
// above the (n/K)-th smallest m gives class k exactly n/K samples. Sweeping k repeatedly is
// coordinate ascent on the dual of the balanced assignment problem; it settles in a few sweeps.
void ClustersTask::calibrate(int c) {
    const int K = cc_.num_classes, D = cc_.dim, n = kCalibrationSamples;
    TeacherNet& t = teachers_[static_cast<size_t>(c)];
    if (K < 2 || n / K < 1) return;
    std::vector<double> L(static_cast<size_t>(n) * K), z(static_cast<size_t>(D)),
        hidden(kTeacherHidden);
    const Rng r{seed_, kStreamTask, kParamCalibration};
    for (int s = 0; s < n; ++s) {
        for (int j = 0; j < D; j += 2) {
            const NormalPair p = r.normal2(param_index(c, s), static_cast<uint32_t>(j / 2));
            z[static_cast<size_t>(j)] = p.first;
            if (j + 1 < D) z[static_cast<size_t>(j) + 1] = p.second;
        }
        teacher_logits(c, z.data(), hidden.data(),
                       L.data() + static_cast<size_t>(s) * K);  // b2 = 0
    }
    std::vector<double> b(static_cast<size_t>(K), 0.0), margin(static_cast<size_t>(n));
    std::vector<int> counts(static_cast<size_t>(K));
    const int target = n / K;
    const int tolerance = std::max(1, n / 100);
    for (int sweep = 0; sweep < kCalibrationSweeps; ++sweep) {
        for (int k = 0; k < K; ++k) {
            for (int s = 0; s < n; ++s) {
                const double* l = L.data() + static_cast<size_t>(s) * K;
                double best = -HUGE_VAL;
                for (int j = 0; j < K; ++j)
                    if (j != k) best = std::max(best, l[j] + b[static_cast<size_t>(j)]);
                margin[static_cast<size_t>(s)] = best - l[k];
            }
            std::nth_element(margin.begin(), margin.begin() + target, margin.end());
            const double above = margin[static_cast<size_t>(target)];
            const double below = *std::max_element(margin.begin(), margin.begin() + target);
            b[static_cast<size_t>(k)] = 0.5 * (above + below);
        }
        std::fill(counts.begin(), counts.end(), 0);
        for (int s = 0; s < n; ++s) {
            const double* l = L.data() + static_cast<size_t>(s) * K;
            int arg = 0;
            for (int j = 1; j < K; ++j)
                if (l[j] + b[static_cast<size_t>(j)] > l[arg] + b[static_cast<size_t>(arg)])
                    arg = j;
            ++counts[static_cast<size_t>(arg)];
        }
        bool balanced = true;
        for (int k = 0; k < K; ++k)
            balanced = balanced && std::abs(counts[static_cast<size_t>(k)] - target) <= tolerance;
        if (balanced) break;
    }
    double mean = 0.0;
    for (double v : b) mean += v;
    mean /= K;
    for (int k = 0; k < K; ++k) t.b2[static_cast<size_t>(k)] = b[static_cast<size_t>(k)] - mean;
}

void ClustersTask::generate(uint64_t stream, uint64_t index, Batch& out, int i,
                            double* work) const {
    const int D = cc_.dim, K = cc_.num_classes;
    const Rng r{seed_, stream, 0};
    const double u = r.uniform_double(index, kLaneCluster);
    int c = static_cast<int>(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    c = std::min(c, cc_.num_clusters - 1);

    double* z = work;
    const double* mu = centre(c);
    float* x = out.x.data() + static_cast<size_t>(i) * D;
    for (int j = 0; j < D; j += 2) {
        const NormalPair n = r.normal2(index, kLaneCoord0 + static_cast<uint32_t>(j / 2));
        z[j] = n.first;
        if (j + 1 < D) z[j + 1] = n.second;
    }
    for (int j = 0; j < D; ++j) x[j] = static_cast<float>(mu[j] + cc_.spread * z[j]);
    double* hidden = work + D;
    double* logits = hidden + kTeacherHidden;
    teacher_logits(c, z, hidden, logits);
    int y = static_cast<int>(std::max_element(logits, logits + K) - logits);
    if (cc_.label_noise > 0.0 && r.bernoulli(index, cc_.label_noise, kLaneNoiseCoin))
        y = static_cast<int>(r.uniform_int(index, static_cast<uint64_t>(K), kLaneNoiseClass));
    out.y[static_cast<size_t>(i)] = y;
    out.group[static_cast<size_t>(i)] = c;
}

void ClustersTask::generate_range(uint64_t stream, uint64_t first, int n, Batch& out,
                                  int out_row) const {
    const size_t work =
        static_cast<size_t>(cc_.dim) + kTeacherHidden + static_cast<size_t>(cc_.num_classes);
    // Small batches are not worth waking the thread team for; the result is the same either way.
#pragma omp parallel for schedule(static) if (static_cast <int64_t>(n) * cc_.dim >= 32768)
    for (int i = 0; i < n; ++i)
        generate(stream, first + static_cast<uint64_t>(i), out, out_row + i, scratch(work));
}

int64_t ClustersTask::train_index(int64_t step, int batch_size, int i) const {
    return order_.index(step, batch_size, i);
}

void ClustersTask::train_batch(int64_t step, int batch_size, Batch& out) const {
    MOESIM_CHECK(step >= 0 && batch_size >= 0, "step and batch size are not negative");
    const int D = cc_.dim;
    out.resize(batch_size, D);
    if (train_size_ == 0) {
        generate_range(kStreamData, static_cast<uint64_t>(step) * static_cast<uint64_t>(batch_size),
                       batch_size, out);
        return;
    }
    // Each row independent (a permutation index, then a copy): in parallel for large batches.
#pragma omp parallel for schedule(static) if (batch_size >= 512)
    for (int i = 0; i < batch_size; ++i) {
        const int64_t e = train_index(step, batch_size, i);
        std::memcpy(out.x.data() + static_cast<size_t>(i) * D, train_.row(static_cast<int>(e)),
                    sizeof(float) * static_cast<size_t>(D));
        out.y[static_cast<size_t>(i)] = train_.y[static_cast<size_t>(e)];
        out.group[static_cast<size_t>(i)] = train_.group[static_cast<size_t>(e)];
    }
}

}  // namespace moe
