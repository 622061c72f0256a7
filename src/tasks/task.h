// The Task interface (DESIGN.md, "Task --batch(step)--> Batch"): a data generator that hands the
// training loop the batch of any step, and a fixed held-out evaluation set. One file per task
// (clusters.cpp, ...); task_create() in task_registry.cpp picks one by data.task.
//
// Every task is a pure function of the config and its seed: the batch of step s is the same whatever
// happened before (a resumed run sees the same data), whatever the thread count.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace moe {

struct Batch {  // B examples
    int B = 0, dim = 0;
    std::vector<float> x;    // (B, dim) row-major inputs
    std::vector<int> y;      // (B) class labels in [0, num_classes)
    std::vector<int> group;  // (B) ground-truth group (the cluster, domain or operation)
    // Token tasks only (markov, modular): (B) the current token of each example, the last token
    // of its input window, which token-id routers read (Pass::token_ids) and the transformer
    // embeds (its input token). Empty for clusters.
    std::vector<int> token;
    // Token tasks: (B) the sequence each example's position belongs to (the positions of one
    // sequence are adjacent), for the sequence-wise balance loss. Empty otherwise.
    std::vector<int64_t> sequence;
    // Token tasks: (B) the position in its sequence of the token each example predicts (its
    // label; markov: t in 1 .. seq_len-1, modular: 4, the c of "a OP b = c", or 1 .. 4 in the
    // transformer's sequence form), for positions.csv and position_experts.csv. Empty otherwise.
    std::vector<int> position;

    // Sizes the three arrays for b examples of width d; keeps capacity, so a batch reused with the
    // same (or a smaller) shape never allocates again.
    void resize(int b, int d) {
        B = b;
        dim = d;
        x.resize(static_cast<size_t>(b) * static_cast<size_t>(d));
        y.resize(static_cast<size_t>(b));
        group.resize(static_cast<size_t>(b));
    }
    // token, sequence and position sized as well, for tasks that have token ids.
    void resize_tokens(int b, int d) {
        resize(b, d);
        token.resize(static_cast<size_t>(b));
        sequence.resize(static_cast<size_t>(b));
        position.resize(static_cast<size_t>(b));
    }
    const int64_t* sequence_ids(int start = 0) const {
        return sequence.empty() ? nullptr : sequence.data() + start;
    }
    const int* token_ids(int start = 0) const {
        return token.empty() ? nullptr : token.data() + start;
    }
    const float* row(int i) const {
        return x.data() + static_cast<size_t>(i) * static_cast<size_t>(dim);
    }
};

class Task {
public:
    virtual ~Task() = default;

    virtual int input_dim() const = 0;
    virtual int num_classes() const = 0;
    virtual int num_groups() const = 0;

    // Fills `out` with the training batch of step `step` (batch_size examples). `out` keeps its
    // capacity: no allocation after the first call with this batch size. Thread-safe (const).
    virtual void train_batch(int64_t step, int batch_size, Batch& out) const = 0;

    // The fixed held-out set of data.eval_size examples, generated once.
    virtual const Batch& eval_set() const = 0;

    virtual std::string_view name() const = 0;

    // The loss of the Bayes-optimal predictor on eval_set() (nats per example), for tasks where it
    // is known exactly (markov, modular); NaN otherwise. metrics.csv and summary.csv carry it and
    // the model's gap to it only for tasks that have one.
    virtual double ideal_loss() const { return std::numeric_limits<double>::quiet_NaN(); }
};

// The task that cfg.data.task names, built from the (validated) config and cfg.seed.
std::unique_ptr<Task> task_create(const Config& cfg);

}  // namespace moe
