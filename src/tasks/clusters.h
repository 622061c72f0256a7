// The `clusters` task (SPEC.md section 4): a Gaussian mixture whose every cluster is labelled by its
// own random teacher. How the data is generated, exactly, is written at the top of clusters.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "tasks/epoch_order.h"
#include "tasks/task.h"

namespace moe {

class ClustersTask final : public Task {
public:
    // Hidden width of the `mlp` teacher.
    static constexpr int kTeacherHidden = 32;
    // Examples per cluster on which each teacher's output bias is calibrated to balanced classes.
    static constexpr int kCalibrationSamples = 4096;

    ClustersTask(const ClustersConfig& cc, int64_t train_size, int64_t eval_size, uint64_t seed);
    explicit ClustersTask(const Config& cfg)
        : ClustersTask(cfg.data.clusters, cfg.data.train_size, cfg.data.eval_size, cfg.seed) {}

    int input_dim() const override { return cc_.dim; }
    int num_classes() const override { return cc_.num_classes; }
    int num_groups() const override { return cc_.num_clusters; }
    void train_batch(int64_t step, int batch_size, Batch& out) const override;
    const Batch& eval_set() const override { return eval_; }
    std::string_view name() const override { return "clusters"; }

    // --- introspection, for tests and analysis ---
    // p(c), the probability of cluster c: proportional to 1 / (c + 1)^imbalance.
    const std::vector<double>& cluster_probabilities() const { return prob_; }
    // Centre of cluster c (dim values).
    const double* centre(int c) const { return centres_.data() + static_cast<size_t>(c) * cc_.dim; }
    // The teacher's clean (noise-free) label for an example of cluster c at standardised offset
    // z = (x - centre) / spread (dim values).
    int teacher_label(int c, const double* z) const;
    // With a fixed train set: the index into it of the i-th example of the batch of `step`.
    int64_t train_index(int64_t step, int batch_size, int i) const;
    // The fixed training set (empty when train_size = 0).
    const Batch& train_set() const { return train_; }

private:
    struct TeacherNet {
        // linear: logits = W2 z + b2 (W2 is K x dim); mlp: logits = W2 tanh(W1 z + b1) + b2.
        std::vector<double> w1, b1, w2, b2;
    };

    int teacher_in()
        const;  // width of the teacher's last layer input: dim (linear) or hidden (mlp)
    void teacher_logits(int c, const double* z, double* hidden, double* logits) const;
    void calibrate(int c);
    // Example `index` of stream (stream, step) into row i of out.
    void generate(uint64_t stream, uint64_t index, Batch& out, int i, double* scratch) const;
    // Examples first .. first+n-1 of the stream into rows out_row .. out_row+n-1 of out.
    void generate_range(uint64_t stream, uint64_t first, int n, Batch& out, int out_row = 0) const;
    // Examples 0 .. n-1 of the stream into out, in chunks, checking the setup stop flag.
    void generate_setup(uint64_t stream, int n, Batch& out) const;

    ClustersConfig cc_;
    int64_t train_size_;
    uint64_t seed_;
    std::vector<double> prob_, cdf_;
    std::vector<double> centres_;       // (num_clusters, dim)
    std::vector<TeacherNet> teachers_;  // one per cluster
    EpochOrder order_;                  // the order the fixed train set is read in
    Batch train_, eval_;
};

}  // namespace moe
