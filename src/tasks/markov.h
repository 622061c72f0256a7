// The `markov` task (SPEC.md section 4): a toy language of random sparse Markov chains, one per
// domain, and the exact loss of the Bayes-optimal predictor. How the data is generated, exactly, is
// written at the top of markov.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "tasks/task.h"

namespace moe {

class MarkovTask final : public Task {
public:
    // prefix: the ideal loss is that of the predictor that sees the whole prefix (the transformer
    // of model.kind: transformer), not the window of data.markov.context tokens.
    MarkovTask(const MarkovConfig& mc, int64_t train_size, int64_t eval_size, uint64_t seed,
               bool prefix = false);
    explicit MarkovTask(const Config& cfg)
        : MarkovTask(cfg.data.markov, cfg.data.train_size, cfg.data.eval_size, cfg.seed,
                     cfg.model.kind == ModelKind::transformer) {}

    int input_dim() const override { return mc_.context * mc_.vocab; }
    int num_classes() const override { return mc_.vocab; }
    int num_groups() const override { return mc_.domains; }
    void train_batch(int64_t step, int batch_size, Batch& out) const override;
    const Batch& eval_set() const override { return eval_; }
    std::string_view name() const override { return "markov"; }
    double ideal_loss() const override { return ideal_loss_; }

    // --- introspection, for tests and analysis ---
    // The standard error of ideal_loss() as an estimate of the expected ideal loss: the standard
    // deviation of the per-example ideal cross-entropy over sqrt(eval examples).
    double ideal_loss_stderr() const { return ideal_stderr_; }
    // p(d), the probability of domain d: proportional to 1 / (d + 1)^imbalance.
    const std::vector<double>& domain_probabilities() const { return prob_; }
    // The chain's contexts: vocab^order of them; context of the last `order` tokens
    // (oldest first) = sum_i token_i * vocab^(order-1-i).
    int num_contexts() const { return contexts_; }
    int context_of(const int* last_tokens) const {
        int c = 0;
        for (int i = 0; i < mc_.order; ++i) c = c * mc_.vocab + last_tokens[i];
        return c;
    }
    // T_d(from -> to), the transition probability of domain d from context `from` to token `to`
    // (0 off the successors).
    double transition(int d, int from, int to) const;
    // The successors of context `from` in domain d (branching distinct tokens, ascending).
    const int* successors(int d, int from) const;
    // Sequence n of data stream `stream` (kStreamData: training, kStreamEval: eval): its domain,
    // and its first `len` tokens (len <= seq_len) into tokens.
    int sequence(uint64_t stream, uint64_t n, int len, int* tokens) const;
    // The Bayes-optimal probability of next token y given the model's window: context token ids,
    // oldest first, -1 for a slot before the start of the sequence (the window of the example at
    // position t holds positions t - context .. t - 1). The posterior over the domain and, for a
    // full window, over the position is exact; the window must be one that can occur.
    double ideal_probability(const int* window, int y) const;
    // The Bayes-optimal probability that token t of a sequence is y given its whole prefix
    // (tokens 0 .. t-1, t >= 1): the exact posterior over the domain. The prefix must be one that
    // can occur.
    double prefix_probability(const int* prefix, int t, int y) const;

private:
    size_t row(int d, int from) const {
        return static_cast<size_t>(d) * static_cast<size_t>(contexts_) + static_cast<size_t>(from);
    }
    // Example number q of a stream (sequence q / (seq_len - 1), position 1 + q % (seq_len - 1))
    // into row i of out; n_seq > 0 cycles the sequences through a fixed set of n_seq.
    void generate(uint64_t stream, uint64_t q, uint64_t n_seq, Batch& out, int i) const;

    MarkovConfig mc_;
    int contexts_ = 0;  // vocab^order
    int64_t train_size_;
    uint64_t seed_;
    std::vector<double> prob_, cdf_;
    std::vector<int> succ_;          // (domains, contexts, branching) successor tokens
    std::vector<double> weight_;     // (domains, contexts, branching) their probabilities
    std::vector<double> start_sum_;  // (domains, contexts) sum over s = 0 .. seq_len-1-context of
                                     // P(tokens s .. s+order-1 = the context | domain)
    double ideal_loss_ = 0.0, ideal_stderr_ = 0.0;
    Batch eval_;
};

}  // namespace moe
