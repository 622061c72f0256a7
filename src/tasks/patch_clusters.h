// The `patch_clusters` task: Chen et al. 2022 ("Towards Understanding the Mixture-of-Experts Layer
// in Deep Learning", NeurIPS), Definition 3.1. How the data is generated, exactly, is written at
// the top of patch_clusters.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "tasks/epoch_order.h"
#include "tasks/task.h"

namespace moe {

class PatchClustersTask final : public Task {
public:
    // Roles of the patches of an example (PatchExample::role).
    static constexpr int kSignal = 0;   // y * alpha * v_k
    static constexpr int kCentre = 1;   // beta * c_k
    static constexpr int kFeature = 2;  // eps * gamma * v_k' (another cluster's feature)
    static constexpr int kNoise = 3;    // roles 3 .. P-1: Gaussian noise patches

    // Everything drawn for one example.
    struct Example {
        int cluster = 0;  // k (the group)
        int other = 0;    // k' != k
        int label = 0;    // class: 0 for y = +1, 1 for y = -1
        int eps = 1;      // +1 or -1
        double alpha = 0, beta = 0, gamma = 0;
        std::vector<int> role;  // (P) role of the patch at each position: a permutation of 0..P-1
        double y() const { return label == 0 ? 1.0 : -1.0; }
    };

    PatchClustersTask(const PatchClustersConfig& pc, int64_t train_size, int64_t eval_size,
                      uint64_t seed);
    explicit PatchClustersTask(const Config& cfg)
        : PatchClustersTask(cfg.data.patch_clusters, cfg.data.train_size, cfg.data.eval_size,
                            cfg.seed) {}

    int input_dim() const override { return pc_.patches * pc_.dim; }
    int num_classes() const override { return 2; }
    int num_groups() const override { return pc_.num_clusters; }
    void train_batch(int64_t step, int batch_size, Batch& out) const override;
    const Batch& eval_set() const override { return eval_; }
    std::string_view name() const override { return "patch_clusters"; }

    // --- introspection, for tests and analysis ---
    // v_k (feature of cluster k) and c_k (centre of cluster k): d values each.
    const double* feature(int k) const { return basis_.data() + static_cast<size_t>(k) * pc_.dim; }
    const double* centre(int k) const {
        return basis_.data() + static_cast<size_t>(pc_.num_clusters + k) * pc_.dim;
    }
    // The draws behind example e of the eval set, of the fixed train set (train_size > 0), or of
    // the fresh training stream (train_size = 0).
    Example eval_example(int64_t e) const;
    Example train_example(int64_t e) const;
    // With a fixed train set: the index into it of the i-th example of the batch of `step`.
    int64_t train_index(int64_t step, int batch_size, int i) const;
    const Batch& train_set() const { return train_; }

private:
    Example draw(uint64_t stream, uint64_t index, int cell) const;
    void generate(uint64_t stream, uint64_t index, int cell, Batch& out, int row) const;
    // Fixed set of n examples of the stream: balanced cells, then the examples, in parallel.
    void generate_set(uint64_t stream, int n, std::vector<uint16_t>& cells, Batch& out) const;

    PatchClustersConfig pc_;
    int64_t train_size_;
    uint64_t seed_;
    std::vector<double> basis_;                       // (2K, d): v_1..v_K, then c_1..c_K
    std::vector<uint16_t> train_cells_, eval_cells_;  // cell = 2 k + label of each example
    EpochOrder order_;                                // the order the fixed train set is read in
    Batch train_, eval_;
};

}  // namespace moe
